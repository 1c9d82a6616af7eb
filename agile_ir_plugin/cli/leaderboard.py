#!/usr/bin/env python
"""Leaderboard: from checkpoints to a publishable table of quality and efficiency.

    python tools/leaderboard.py --arch ESC --ckpt esc_x4.pth --scale 4 \\
        --datasets Set5 Set14 B100 Urban100 Manga109 --root datasets/benchmark [--param-key params_ema] \\
        [--tile 256] [--self-ensemble] [--efficiency] [--out DIR] [--save-images]
    python tools/leaderboard.py -opt options/test_esc_x4.yml [--datasets Set5 --root DIR]
    python tools/leaderboard.py --arch bicubic --scale 2 3 4 --datasets Set5 Set14 B100 --root ../shared/data
    python tools/leaderboard.py --arch ESC --ckpt a.pth b.pth -opt options/test_esc_x4.yml --visual

Writes ``leaderboard.md`` (paper-style PSNR/SSIM table, all rows, efficiency), ``leaderboard.csv``
and ``leaderboard.json`` (one row per model x dataset x scale) to ``--out``, with
``--save-images`` the 8-bit SR outputs to ``--out/images/<model>/<dataset>/X<scale>/`` and with
``--visual`` one comparison PNG per image (bicubic | each model | HR, PSNR on each) to
``--out/visual/<dataset>/X<scale>/``.  Every ``--ckpt`` and every ``-opt`` file is one model of the
table; a ``bicubic`` row comes first unless ``--no-bicubic``.  Scores follow BasicSR's test
pipeline (``--convention basicsr``, what ``tools/test.py`` prints); ``--convention matlab`` scores a
grayscale ground truth on its gray level as the MATLAB-era tables.  Inputs are padded as BasicSR's
model classes pad them: an options file's ``model_type`` (``SwinIRModel``: ``network_g.window_size``,
``ImageRestorationModel``: ``val.window_size``, else none), with ``--arch`` the network's
``window_size`` (as ``SwinIRModel``); ``--pad-multiple`` overrides.
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

from .leaderboard_spectral import detect_task, run_spectral, spectral_models_from_args, spectral_models_from_options


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
    p.add_argument('--pad-multiple', type=int, help='pad H, W to this multiple (default: as BasicSR\'s model class, '
                   'see above)')
    p.add_argument('--convention', choices=('basicsr', 'matlab'), default='basicsr',
                   help='basicsr (default: BasicSR\'s test pipeline, grayscale images scored on Y) or matlab '
                   '(grayscale ground truth scored on its gray level, MATLAB-era tables)')
    p.add_argument('--no-bicubic', action='store_true', help='no bicubic baseline row')
    p.add_argument('--visual', action='store_true', help='comparison PNGs (bicubic | models | HR) under OUT/visual/')
    p.add_argument('--visual-crop', type=int, default=96, help='HR crop size of the --visual pictures')
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


def preflight(path, opt, args, own_datasets=True):
    """BasicSR's preflight, as train and test run it (``tool='leaderboard'``): every problem of the
    options file (keys, network, checkpoint, data folders, ``--out``) raised at once as a
    ``PreflightError`` (one ``error:`` line each) before anything is written; warnings are logged.
    ``own_datasets=False`` leaves out the file's datasets when flags replace them."""
    from agile_ir_plugin.basicsr.preflight import run_preflight
    checked = {k: v for k, v in opt.items() if own_datasets or k != 'datasets'}
    for line in run_preflight(checked, tool='leaderboard', out_dir=args.out):
        logging.warning('%s: %s', path, line)


def models_from_options(path, args):
    """One model spec from a BasicSR test YAML (network_g, path.pretrain_network_g, param_key_g,
    strict_load_g, datasets test_*/val_* with dataroot_gt/dataroot_lq/filename_tmpl, tile)."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'options file not found: {path}')
    opt = yaml.safe_load(path.read_text()) or {}
    preflight(path, opt, args, own_datasets=not args.datasets)
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
    # pad as the options' model class does in tools/test.py (BasicSR SwinIRModel / our ImageRestorationModel)
    pad = {'SwinIRModel': net.get('window_size'),
           'ImageRestorationModel': (opt.get('val') or {}).get('window_size')}.get(opt.get('model_type'))
    extra['pad_multiple'] = int(pad or 1)
    psnr_opt = ((opt.get('val') or {}).get('metrics') or {}).get('psnr') or {}
    if psnr_opt:  # BasicSR's calculate_psnr defaults to test_y_channel=False
        extra['y_channel'] = bool(psnr_opt.get('test_y_channel', False))
    crop = psnr_opt.get('crop_border')
    if crop is not None and args.crop_border is None:
        extra['crop_border'] = crop
    scale = opt.get('scale', 4)
    return [dict(name=args.name or opt.get('name') or path.stem, arch=arch, kwargs=net,
                 ckpt=paths.get('pretrain_network_g'), param_key=args.param_key or paths.get('param_key_g', 'params'),
                 strict=paths.get('strict_load_g', True), scales=args.scale or [scale], datasets=datasets,
                 extra=extra)]


def arch_window_size(model, kwargs):
    """The ``window_size`` the network was built with (``kwargs``' or its constructor's default), which
    BasicSR's ``SwinIRModel`` pads inputs to; 1 when it has none."""
    import inspect
    value = kwargs.get('window_size', getattr(model, 'window_size', None))
    if value is None:
        param = inspect.signature(type(model)).parameters.get('window_size')
        value = None if param is None else param.default
    return value if isinstance(value, int) and value > 0 else 1


def with_bicubic(specs):
    """``specs`` with a ``bicubic`` spec first for the datasets and scales they use (one per distinct
    dataset list), unless one is there already."""
    if any(spec['arch'].lower() == 'bicubic' for spec in specs):
        return specs
    groups = {}
    for spec in specs:
        key = json.dumps(spec['datasets'], default=str)
        group = groups.setdefault(key, dict(name='bicubic', arch='bicubic', kwargs={}, ckpt=None, param_key=None,
                                            strict=True, scales=[], datasets=spec['datasets'], extra={}))
        group['scales'] += [s for s in spec['scales'] if s not in group['scales']]
        for key in ('crop_border', 'y_channel'):  # scored as the models it sits beside
            if key in spec['extra']:
                group['extra'][key] = spec['extra'][key]
    return list(groups.values()) + specs


def run_sr(args, specs, device, out):
    """Rows of ``evaluate`` for every model x scale x dataset (+ the --visual pictures)."""
    from agile_ir_plugin.evaluation import build_model, evaluate, load_weights
    from agile_ir_plugin.evaluation.visual import Comparison

    comparison = Comparison(crop=args.visual_crop) if args.visual else None
    if not args.no_bicubic:
        specs = with_bicubic(specs)
    jobs = []  # every model built and its checkpoint loaded before any inference: a bad one fails at once
    for spec in specs:
        for scale in spec['scales']:
            options = dict(tile=args.tile, tile_overlap=args.tile_overlap, tile_blend=args.tile_blend,
                           crop_border=args.crop_border)
            options.update(spec['extra'])
            if spec['arch'].lower() == 'bicubic':
                model = 'bicubic'
            else:
                model = build_model(spec['arch'], scale=scale, **spec['kwargs'])
                if spec['ckpt']:
                    used = load_weights(model, spec['ckpt'], spec['param_key'], strict=spec['strict'])
                    logging.info('%s: loaded %s%s', spec['name'], spec['ckpt'], f' [{used}]' if used else '')
                else:
                    logging.warning('%s: no checkpoint given, evaluating randomly initialised weights', spec['name'])
                options.setdefault('pad_multiple', arch_window_size(model, spec['kwargs']))
            if args.pad_multiple:
                options['pad_multiple'] = args.pad_multiple
            jobs.append((spec, scale, model, options))
    rows = []
    for spec, scale, model, options in jobs:
        rows += evaluate(model, spec['datasets'] or ['Set5', 'Set14', 'B100'], scale=scale, root=args.root,
                         device=device, self_ensemble=args.self_ensemble,
                         metrics=tuple(args.metrics), lpips_net=args.lpips_net, lpips_weights=args.lpips_weights,
                         save_dir=out / 'images' / spec['name'] if args.save_images else None,
                         efficiency=args.efficiency, efficiency_options={'runs': args.latency_runs},
                         name=spec['name'], progress=not args.no_progress, convention=args.convention,
                         generate_lr=not args.no_generate_lr,
                         on_image=comparison.hook(spec['name']) if comparison else None, **options)
    if comparison:
        written = comparison.write(out / 'visual')
        logging.info('visual: %d comparison pictures under %s', len(written), out / 'visual')
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
        for line in getattr(err, 'problems', None) or [err]:  # a PreflightError lists every problem
            print(f'error: {line}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
