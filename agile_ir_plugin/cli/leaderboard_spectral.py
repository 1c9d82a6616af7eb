"""Spectral mode of the leaderboard (RGB -> hyperspectral cube, NTIRE 2022 MRAE / RMSE / PSNR):
telling the task from the flags and options files, the model and dataset specs, the checks made
before any inference, and the rows (``agile_ir_plugin.evaluation.evaluate_spectral``).
``agile_ir_plugin.cli.leaderboard`` is the front end."""
import logging
from pathlib import Path


SPECTRAL_ARCHS = ('MSTPlusPlus', )
SPECTRAL_FLAGS = ('gt_dir', 'rgb_dir', 'meta_info', 'mat_key', 'rgb_norm', 'dataset_name')


def _load_options(path):
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'options file not found: {path}')
    return yaml.safe_load(path.read_text()) or {}


def _test_datasets(opt):
    """(key, dataset options) of the non-training datasets of an options dict."""
    return [(key, ds) for key, ds in (opt.get('datasets') or {}).items()
            if not key.startswith('train') and isinstance(ds, dict)]


def is_spectral_options(opt):
    """An options dict of a spectral-reconstruction model: an HSIDataset test/val dataset,
    ``model_type: SpectralModel`` or a spectral arch."""
    return (any(ds.get('type') == 'HSIDataset' for _, ds in _test_datasets(opt))
            or opt.get('model_type') == 'SpectralModel'
            or (opt.get('network_g') or {}).get('type') in SPECTRAL_ARCHS)


def detect_task(args):
    """'spectral' or 'sr' from --task, the options files, --arch and the spectral flags."""
    opt_kinds = {path: 'spectral' if is_spectral_options(_load_options(path)) else 'sr' for path in args.opt or []}
    if len(set(opt_kinds.values())) > 1:
        raise ValueError('options files of SR and spectral models cannot share one report: '
                         + ', '.join(f'{path} ({kind})' for path, kind in opt_kinds.items()))
    given = [f'--{k.replace("_", "-")}' for k in SPECTRAL_FLAGS if getattr(args, k) is not None]
    if args.task:
        task = args.task
    elif 'spectral' in opt_kinds.values() or (args.arch in SPECTRAL_ARCHS) or given:
        task = 'spectral'
    else:
        task = 'sr'
    wrong = [path for path, kind in opt_kinds.items() if kind != task]
    if wrong:
        raise ValueError(f'--task {task} does not fit the options file {wrong[0]} (a {opt_kinds[wrong[0]]} model)')
    if task == 'sr' and given:
        raise ValueError(f'{", ".join(given)} only apply to --task spectral')
    if task == 'spectral':
        if args.arch and args.arch.lower() == 'bicubic':
            raise ValueError('bicubic is an SR baseline; spectral mode needs an RGB -> cube model (e.g. MSTPlusPlus)')
        sr_only = [flag for flag, used in (('--scale', args.scale), ('--datasets', args.datasets),
                                           ('--root', args.root), ('--tile', args.tile),
                                           ('--self-ensemble', args.self_ensemble),
                                           ('--save-images', args.save_images), ('--visual', args.visual),
                                           ('--convention', args.convention != 'basicsr'),
                                           ('--metrics', args.metrics != ['psnr', 'ssim'])) if used]
        if sr_only:
            raise ValueError(f'{", ".join(sr_only)} do not apply to spectral mode (full images, MRAE / RMSE / PSNR)')
    return task


def spectral_dataset_from_args(args):
    """The dataset given by --gt-dir / --rgb-dir / --meta-info / --mat-key / --rgb-norm."""
    return {'name': args.dataset_name or 'NTIRE2022', 'gt': args.gt_dir, 'rgb': args.rgb_dir,
            'meta_info': args.meta_info, 'mat_key': args.mat_key or 'cube', 'rgb_norm': args.rgb_norm or 'minmax',
            'origin': {'gt': '--gt-dir', 'rgb': '--rgb-dir', 'meta_info': '--meta-info'}}


def spectral_models_from_args(args):
    """Model specs of --arch/--ckpt with the dataset of the spectral flags."""
    if not (args.gt_dir or args.rgb_dir):
        raise ValueError('spectral mode needs --gt-dir (folder of .mat cubes) and --rgb-dir (folder of RGB images), '
                         'or -opt with an HSIDataset test dataset')
    from .leaderboard import models_from_args
    specs = models_from_args(args)
    for spec in specs:
        spec.update(datasets=[spectral_dataset_from_args(args)], scales=[1])
    return specs


def spectral_models_from_options(path, args):
    """One model spec from a spectral test/train YAML (network_g, path.pretrain_network_g, param_key_g,
    strict_load_g, HSIDataset test_*/val_* datasets, val.metrics.*.crop_border); the spectral flags
    replace the options file's datasets."""
    from .leaderboard import preflight
    opt = _load_options(path)
    preflight(path, opt, args, own_datasets=not (args.gt_dir or args.rgb_dir))
    net = dict(opt.get('network_g') or {})
    if 'type' not in net:
        raise ValueError(f'{path}: no network_g.type')
    arch = net.pop('type')
    paths = opt.get('path') or {}
    if args.gt_dir or args.rgb_dir:
        datasets = [spectral_dataset_from_args(args)]
    else:
        datasets = []
        for key, ds in _test_datasets(opt):
            if ds.get('type') != 'HSIDataset':
                logging.warning('%s: dataset %s is %s, not HSIDataset; skipped', path, key, ds.get('type'))
                continue
            if not ds.get('bgr2rgb', True):
                raise ValueError(f'{path}: datasets.{key}.bgr2rgb: false is not supported by the leaderboard '
                                 '(evaluate_spectral reads RGB as MST++ does)')
            where = f'{path}: datasets.{key}.'
            datasets.append({'name': ds.get('name', key), 'gt': ds.get('dataroot_gt'), 'rgb': ds.get('dataroot_lq'),
                             'meta_info': ds.get('meta_info_file'), 'mat_key': ds.get('mat_key', 'cube'),
                             'rgb_norm': str(ds.get('rgb_norm', 'minmax')),
                             'origin': {'gt': where + 'dataroot_gt', 'rgb': where + 'dataroot_lq',
                                        'meta_info': where + 'meta_info_file'}})
        if not datasets:
            raise ValueError(f'{path}: no HSIDataset test dataset (datasets.test_*/val_* with type HSIDataset); '
                             'pass --gt-dir and --rgb-dir')
    extra = {}
    crops = {m.get('crop_border') for m in ((opt.get('val') or {}).get('metrics') or {}).values()
             if isinstance(m, dict) and m.get('crop_border') is not None}
    if len(crops) > 1:
        raise ValueError(f'{path}: val.metrics disagree on crop_border ({sorted(crops)}); pass --crop-border')
    if crops:
        extra['crop_border'] = crops.pop()
    return [dict(name=args.name or opt.get('name') or Path(path).stem, arch=arch, kwargs=net,
                 ckpt=paths.get('pretrain_network_g'), param_key=args.param_key or paths.get('param_key_g', 'params'),
                 strict=paths.get('strict_load_g', True), scales=[1], datasets=datasets, extra=extra)]


def check_spectral_dataset(ds, crop_border):
    """Fail before any inference, with one line naming the path, on a missing folder or list, an
    empty or unpaired dataset, or images too small for ``crop_border``."""
    from agile_ir_plugin.basicsr.data.hsi_dataset import HSIDataset
    for key, what in (('gt', 'folder of .mat cubes'), ('rgb', 'folder of RGB images')):
        if not ds[key]:
            raise ValueError(f'spectral dataset {ds["name"]!r}: no {what} given ({ds["origin"][key]})')
        if not Path(ds[key]).is_dir():
            raise FileNotFoundError(f'spectral dataset {ds["name"]!r}: {what} not found: {ds[key]} '
                                    f'({ds["origin"][key]})')
    if ds['meta_info']:
        if not Path(ds['meta_info']).is_file():
            raise FileNotFoundError(f'spectral dataset {ds["name"]!r}: image list not found: {ds["meta_info"]} '
                                    f'({ds["origin"]["meta_info"]})')
        if not Path(ds['meta_info']).read_text().strip():
            raise ValueError(f'spectral dataset {ds["name"]!r}: the image list {ds["meta_info"]} names no image '
                             f'({ds["origin"]["meta_info"]})')
    dataset = HSIDataset({'phase': 'val', 'dataroot_gt': str(ds['gt']), 'dataroot_lq': str(ds['rgb']),
                          'meta_info_file': ds['meta_info'], 'mat_key': ds['mat_key'], 'rgb_norm': ds['rgb_norm']})
    for (_, cube_path, _), (_, h, w) in zip(dataset.pairs, dataset.shapes):
        if 2 * crop_border >= min(h, w):
            raise ValueError(f'spectral dataset {ds["name"]!r}: a crop border of {crop_border} leaves nothing of '
                             f'{cube_path} ({h}x{w}); pass a smaller --crop-border (NTIRE 2022: 128 on 482x512)')


def run_spectral(args, specs, device):
    """Rows of ``evaluate_spectral`` for every model x dataset (+ efficiency at scale 1)."""
    from agile_ir_plugin.evaluation import build_model, evaluate_spectral, load_weights, measure

    for spec in specs:
        spec['crop_border'] = spec['extra'].get('crop_border', 128) if args.crop_border is None else args.crop_border
        for ds in spec['datasets']:
            check_spectral_dataset(ds, spec['crop_border'])
    rows = []
    for spec in specs:
        if spec['arch'].lower() == 'bicubic':
            raise ValueError('bicubic is an SR baseline; spectral mode needs an RGB -> cube model (e.g. MSTPlusPlus)')
        model = build_model(spec['arch'], **spec['kwargs'])
        if spec['ckpt']:
            used = load_weights(model, spec['ckpt'], spec['param_key'], strict=spec['strict'])
            logging.info('%s: loaded %s%s', spec['name'], spec['ckpt'], f' [{used}]' if used else '')
        else:
            logging.warning('%s: no checkpoint given, evaluating randomly initialised weights', spec['name'])
        eff = {}
        if args.efficiency:
            eff = measure(model, 1, device=device, pad_multiple=args.pad_multiple, runs=args.latency_runs)
            if str(eff.get('latency_input', '')).startswith('LR '):
                eff['latency_input'] = 'RGB ' + eff['latency_input'][3:]
        for ds in spec['datasets']:
            logging.info('%s: %s (%s, %s)', spec['name'], ds['name'], ds['gt'], ds['rgb'])
            row = evaluate_spectral(model, str(ds['gt']), str(ds['rgb']), meta_info_file=ds['meta_info'],
                                    crop_border=spec['crop_border'], mat_key=ds['mat_key'], rgb_norm=ds['rgb_norm'],
                                    device=device, model_name=spec['name'], dataset_name=ds['name'])
            row.update(crop_border=spec['crop_border'], device=str(device))
            row.update(eff)
            rows.append(row)
    return rows
