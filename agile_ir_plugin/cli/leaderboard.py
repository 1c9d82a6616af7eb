#!/usr/bin/env python
"""Leaderboard: from checkpoints to a publishable table of quality and efficiency.

    python tools/leaderboard.py --arch ESC --ckpt esc_x4.pth --scale 4 \\
        --datasets Set5 Set14 B100 Urban100 Manga109 --root datasets/benchmark [--param-key params_ema] \\
        [--tile 256] [--self-ensemble] [--efficiency] [--out DIR] [--save-images]
    python tools/leaderboard.py -opt options/test_esc_x4.yml [--datasets Set5 --root DIR]
    python tools/leaderboard.py --arch bicubic --scale 2 3 4 --datasets Set5 Set14 B100 --root ../shared/data

Writes ``leaderboard.md`` (paper-style PSNR/SSIM table, all rows, efficiency), ``leaderboard.csv``
and ``leaderboard.json`` (one row per model x dataset x scale) to ``--out``, and with
``--save-images`` the 8-bit SR outputs to ``--out/images/<model>/<dataset>/X<scale>/``.
Conventions (Y channel, border = scale, mod-crop, 8-bit rounding, LPIPS, memory): docs/evaluation.md.
Arch names: ``agile_ir_plugin.archs.ARCHS``, BasicSR's ARCH_REGISTRY, or ``bicubic``.

Spectral mode (RGB -> hyperspectral cube, e.g. MST++; NTIRE 2022 MRAE / RMSE / PSNR through
``agile_ir_plugin.evaluation.evaluate_spectral``), one row per model x dataset:

    python tools/leaderboard.py --task spectral --arch MSTPlusPlus --ckpt mstpp.pth \\
        --gt-dir ARAD_1K/Train_Spec --rgb-dir ARAD_1K/Train_RGB --meta-info ARAD_1K/split_txt/valid_list.txt \\
        [--crop-border 128] [--dataset-name NTIRE2022] [--efficiency]
    python tools/leaderboard.py -opt options/test_mstpp_ntire.yml [--gt-dir .. --rgb-dir ..]

It is chosen by ``--task spectral`` or automatically for an options file with an ``HSIDataset`` test
dataset (or ``SpectralModel`` / ``MSTPlusPlus``), for ``--arch MSTPlusPlus`` and when ``--gt-dir``
is given.  ``--crop-border`` defaults to the options file's metric ``crop_border``, else 128
(NTIRE 2022); ``--efficiency`` measures a 1x3x256x256 RGB input (scale 1).
"""
import argparse
import datetime
import json
import logging
import platform
import shlex
import sys
import time
from pathlib import Path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-opt', '--opt', nargs='+', metavar='YML', help='BasicSR test options file(s)')
    p.add_argument('--arch', help='arch name (ESC, SwinIR, ..., or bicubic)')
    p.add_argument('--arch-args', default='{}', metavar='JSON', help='constructor kwargs as JSON, e.g. \'{"dim": 64}\'')
    p.add_argument('--ckpt', nargs='+', default=[None], help='checkpoint(s); each is one model')
    p.add_argument('--param-key', default=None, help='key of the state dict in the checkpoint (default: params, '
                   'else params_ema)')
    p.add_argument('--name', help='model name in the table (default: checkpoint stem / options name / arch)')
    p.add_argument('--scale', type=int, nargs='+', help='scale(s) (default 4, or the options file\'s)')
    p.add_argument('--datasets', nargs='+', help='dataset names under --root, or dataset directories')
    p.add_argument('--root', help='folder holding the datasets (layouts: docs/evaluation.md)')
    p.add_argument('--device', help='cpu / cuda / cuda:1 (default: cuda if available)')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--tile', type=int, help='LR tile size for large images (default: whole image)')
    p.add_argument('--tile-overlap', type=int, default=32, help='LR overlap of neighbouring tiles')
    p.add_argument('--tile-blend', type=int, help='width of the blending ramp inside the overlap (default overlap/2)')
    p.add_argument('--pad-multiple', type=int, help='pad H, W to this multiple (default: the model\'s window_size)')
    p.add_argument('--self-ensemble', action='store_true', help='x8 geometric self-ensemble')
    p.add_argument('--metrics', nargs='+', default=['psnr', 'ssim'],
                   help='psnr ssim psnr_rgb ssim_rgb lpips (default: psnr ssim)')
    p.add_argument('--crop-border', type=int, help='pixels cropped on each side (default: scale; spectral: the '
                   'options file\'s, else 128)')
    p.add_argument('--lpips-net', default='alex', help='LPIPS backbone: alex, vgg, squeeze')
    p.add_argument('--lpips-weights', help='local torchvision backbone weights for LPIPS (default: TORCH_HOME cache)')
    p.add_argument('--efficiency', action='store_true',
                   help='params, MACs (LR 256², 1280x720 output), latency, memory')
    p.add_argument('--latency-runs', type=int, default=10, help='timed runs for the latency median')
    p.add_argument('--no-generate-lr', action='store_true', help='fail instead of generating missing LR images')
    p.add_argument('--out', default='results/leaderboard', help='output folder (default: results/leaderboard)')
    p.add_argument('--save-images', action='store_true', help='save SR images under OUT/images/')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    s = p.add_argument_group('spectral mode (RGB -> hyperspectral cube, NTIRE 2022 MRAE / RMSE / PSNR)')
    s.add_argument('--task', choices=('sr', 'spectral'),
                   help='sr or spectral (default: spectral for HSIDataset options files, --arch MSTPlusPlus or '
                   '--gt-dir, else sr)')
    s.add_argument('--gt-dir', help='folder of hyperspectral .mat cubes (ARAD_1K Train_Spec)')
    s.add_argument('--rgb-dir', help='folder of the RGB images of the same names (ARAD_1K Train_RGB)')
    s.add_argument('--meta-info', help='list of the image names to score, one a line (e.g. split_txt/valid_list.txt; '
                   'default: every cube of --gt-dir)')
    s.add_argument('--mat-key', help='variable holding the cube in the .mat files (default: cube)')
    s.add_argument('--rgb-norm', choices=('minmax', '255'), help='RGB normalisation (default: minmax, as MST++)')
    s.add_argument('--dataset-name', help='dataset name in the table (default: NTIRE2022)')
    args = p.parse_args(argv)
    if not args.opt and not args.arch:
        p.error('give --arch (with --ckpt) or -opt options.yml')
    return args


def models_from_args(args):
    """[(name, arch, arch_kwargs, ckpt, param_key, strict, scales, datasets, extra)] from the flags."""
    try:
        arch_kwargs = json.loads(args.arch_args)
    except json.JSONDecodeError as err:
        raise ValueError(f'--arch-args is not valid JSON ({err})') from None
    specs = []
    for ckpt in args.ckpt:
        name = args.name or (Path(ckpt).stem if ckpt else args.arch)
        if args.name and len(args.ckpt) > 1:
            name = f'{args.name}-{Path(ckpt).stem}'
        specs.append(dict(name=name, arch=args.arch, kwargs=dict(arch_kwargs), ckpt=ckpt, param_key=args.param_key,
                          strict=True, scales=args.scale or [4], datasets=args.datasets, extra={}))
    return specs


def models_from_options(path, args):
    """One model spec from a BasicSR test YAML (network_g, path.pretrain_network_g, param_key_g,
    strict_load_g, datasets test_*/val_* with dataroot_gt/dataroot_lq/filename_tmpl, tile)."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'options file not found: {path}')
    opt = yaml.safe_load(path.read_text()) or {}
    net = dict(opt.get('network_g') or {})
    if 'type' not in net:
        raise ValueError(f'{path}: no network_g.type')
    arch = net.pop('type')
    paths = opt.get('path') or {}
    datasets = args.datasets
    if not datasets:
        datasets = []
        for key, ds in (opt.get('datasets') or {}).items():
            if key.startswith('train') or not isinstance(ds, dict):
                continue
            if not ds.get('dataroot_gt'):
                logging.warning('%s: dataset %s has no dataroot_gt, skipped', path, key)
                continue
            datasets.append({'name': ds.get('name', key), 'hr': ds['dataroot_gt'], 'lr': ds.get('dataroot_lq'),
                             'filename_tmpl': ds.get('filename_tmpl')})
        if not datasets:
            raise ValueError(f'{path}: no test datasets (datasets.test_*.dataroot_gt); pass --datasets and --root')
    extra = {}
    tile = opt.get('tile') or {}
    if isinstance(tile, dict) and tile.get('tile_size'):
        extra.update(tile=tile['tile_size'], tile_overlap=tile.get('tile_pad', args.tile_overlap))
    crop = (((opt.get('val') or {}).get('metrics') or {}).get('psnr') or {}).get('crop_border')
    if crop is not None and args.crop_border is None:
        extra['crop_border'] = crop
    scale = opt.get('scale', 4)
    return [dict(name=args.name or opt.get('name') or path.stem, arch=arch, kwargs=net,
                 ckpt=paths.get('pretrain_network_g'), param_key=args.param_key or paths.get('param_key_g', 'params'),
                 strict=paths.get('strict_load_g', True), scales=args.scale or [scale], datasets=datasets,
                 extra=extra)]


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
                                           ('--save-images', args.save_images),
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
    specs = models_from_args(args)
    for spec in specs:
        spec.update(datasets=[spectral_dataset_from_args(args)], scales=[1])
    return specs


def spectral_models_from_options(path, args):
    """One model spec from a spectral test/train YAML (network_g, path.pretrain_network_g, param_key_g,
    strict_load_g, HSIDataset test_*/val_* datasets, val.metrics.*.crop_border); the spectral flags
    replace the options file's datasets."""
    opt = _load_options(path)
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


def run_sr(args, specs, device, out):
    """Rows of ``evaluate`` for every model x scale x dataset."""
    from agile_ir_plugin.evaluation import build_model, evaluate, load_weights

    rows = []
    for spec in specs:
        for scale in spec['scales']:
            if spec['arch'].lower() == 'bicubic':
                model = 'bicubic'
            else:
                model = build_model(spec['arch'], scale=scale, **spec['kwargs'])
                if spec['ckpt']:
                    used = load_weights(model, spec['ckpt'], spec['param_key'], strict=spec['strict'])
                    logging.info('%s: loaded %s%s', spec['name'], spec['ckpt'], f' [{used}]' if used else '')
                else:
                    logging.warning('%s: no checkpoint given, evaluating randomly initialised weights', spec['name'])
            options = dict(tile=args.tile, tile_overlap=args.tile_overlap, tile_blend=args.tile_blend,
                           crop_border=args.crop_border)
            options.update(spec['extra'])
            rows += evaluate(model, spec['datasets'] or ['Set5', 'Set14', 'B100'], scale=scale, root=args.root,
                             device=device, pad_multiple=args.pad_multiple, self_ensemble=args.self_ensemble,
                             metrics=tuple(args.metrics), lpips_net=args.lpips_net, lpips_weights=args.lpips_weights,
                             save_dir=out / 'images' / spec['name'] if args.save_images else None,
                             efficiency=args.efficiency, efficiency_options={'runs': args.latency_runs},
                             name=spec['name'], progress=not args.no_progress,
                             generate_lr=not args.no_generate_lr, **options)
    return rows


def run(args):
    import torch

    import agile_ir_plugin  # noqa: F401  (compat fixes + registries before BasicSR)
    from agile_ir_plugin.evaluation import write_report
    from agile_ir_plugin.profiling import device_name

    if args.threads:
        torch.set_num_threads(args.threads)
    task = detect_task(args)
    from_args, from_options = ((spectral_models_from_args, spectral_models_from_options) if task == 'spectral'
                               else (models_from_args, models_from_options))
    specs = from_args(args) if args.arch else []
    for path in args.opt or []:
        specs += from_options(path, args)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    out = Path(args.out)
    start = time.perf_counter()
    if task == 'spectral':
        rows = run_spectral(args, specs, device)
        wall = time.perf_counter() - start
        timing = f'{wall:.1f} s wall after start-up (models and metrics {sum(r["seconds"] for r in rows):.1f} s)'
    else:
        rows = run_sr(args, specs, device, out)
        wall = time.perf_counter() - start
        timing = (f'{wall:.1f} s wall after start-up (model {sum(r["time_model_s"] for r in rows):.1f} s, '
                  f'metrics {sum(r["time_metric_s"] for r in rows):.1f} s)')
    meta = {
        'command': 'python tools/leaderboard.py ' + shlex.join(sys.argv[1:] if args._argv is None else args._argv),
        'device': device_name(device),
        'versions': f'torch {torch.__version__}, Python {platform.python_version()}',
        'date': datetime.date.today().isoformat(),
        'evaluation time': timing,
    }
    paths = write_report(rows, out, meta=meta)
    print(paths['md'].read_text())
    print('written: ' + ', '.join(str(p) for p in paths.values()))
    return 0


def main(argv=None):
    args = parse_args(argv)
    args._argv = argv
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    from agile_ir_plugin.checkpoint import CheckpointError
    try:
        return run(args)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
