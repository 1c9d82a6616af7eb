#!/usr/bin/env python
"""Upscale your own images with a trained network (one file or every image of a folder).

    python tools/infer.py photo.jpg -c experiments/ESC_x4_demo/models/net_g_latest.pth
    python tools/infer.py my_folder/ -c ESC_DIV2K_X4.pth -o upscaled/ --tile 256 --precision bf16
    python tools/infer.py scan.tif -c swinir_x4.pth --arch SwinIR --arch-arg upscale=4 --arch-arg embed_dim=60 ...

The architecture and scale are read from the checkpoint: ESC, ESCFP, AgileIR, Restormer+GLMHA
and MST++ from their keys and shapes, others through spandrel when it is installed; ``--arch``
(any registered name) with ``--arch-arg key=value`` / ``--opt options.yml`` (its ``network_g``)
names the network instead.  Output: PNG, one per input, ``<output>/<name>.png``, in the input's
layout and bit depth (gray, RGB, RGBA with the alpha upscaled by bicubic; 8 or 16 bit).
Checkpoint, options and output problems stop the command before anything is written (``error:``
lines, exit code 1); an image that cannot be read or written is reported on one line and the
others go on (exit code 1 at the end).
"""
import argparse
import os
import sys
from pathlib import Path

DEFAULT_OUTPUT = os.path.join('results', 'infer')


def build_parser():
    p = argparse.ArgumentParser(prog='infer', description='Upscale images with a trained network (PNG output).')
    p.add_argument('inputs', nargs='+', help='image files and/or folders (the images directly inside a folder)')
    p.add_argument('-c', '--checkpoint', required=True, help='weights: BasicSR, official, MMagic or a bare state dict')
    p.add_argument('-o', '--output', default=DEFAULT_OUTPUT,
                   help=f'output folder (default {DEFAULT_OUTPUT}), or a .png path for a single input image')
    p.add_argument('--arch', help='network name (agile_ir_plugin.archs or BasicSR ARCH_REGISTRY); default: detected')
    p.add_argument('--arch-arg', action='append', default=[], metavar='KEY=VALUE',
                   help='a constructor argument of --arch (YAML value), repeatable')
    p.add_argument('--opt', help='BasicSR options file whose network_g (type and arguments) names the network')
    p.add_argument('--scale', type=int, help='expected scale (default: read from the checkpoint)')
    p.add_argument('--param-key', help='weight set: params or params_ema (default: params_ema when present)')
    p.add_argument('--tile', type=int, help='LR tile size for large images (default: whole image at once)')
    p.add_argument('--tile-overlap', type=int, default=32, help='LR pixels neighbouring tiles share (default 32)')
    p.add_argument('--pad-multiple', type=int,
                   help="pad H and W to a multiple of this (default: a named network's window_size)")
    p.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default='fp32')
    p.add_argument('--device', default='auto', help='auto (cuda when available), cpu, cuda, cuda:1 ...')
    return p


def _arch_args(args):
    import yaml
    arch, kwargs = args.arch, {}
    if args.opt:
        try:
            with open(args.opt) as f:
                network = dict((yaml.safe_load(f) or {}).get('network_g') or {})
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f'--opt {args.opt}: cannot read it as YAML options ({err})') from None
        if 'type' not in network:
            raise ValueError(f'--opt {args.opt}: no network_g.type in it')
        arch = arch or network.pop('type')
        network.pop('type', None)
        kwargs.update(network)
    for item in args.arch_arg:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'--arch-arg {item!r}: expected KEY=VALUE')
        kwargs[key.strip()] = yaml.safe_load(value)
    if kwargs and not arch:
        raise ValueError('--arch-arg needs --arch (or --opt with a network_g)')
    return arch, kwargs


def collect(inputs, output):
    """[(input path, output path)] and the problems (one line each), before anything is read or written."""
    from agile_ir_plugin.infer import IMAGE_EXTENSIONS
    problems, files = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                problems.append(f'{item}: no images in this folder (extensions {", ".join(IMAGE_EXTENSIONS)})')
            files += found
        elif item.is_file():
            files.append(item)
        else:
            problems.append(f'{item}: no such file or folder')
    out = Path(output)
    single = out.suffix.lower() == '.png'
    if single and len(files) > 1:
        problems.append(f'--output {out} is a .png file but there are {len(files)} input images: give a folder')
    pairs, seen = [], {}
    for f in files:
        dst = out if single else out / f'{f.stem}.png'
        if dst.resolve() == f.resolve():
            problems.append(f'{f}: the output would overwrite this input; choose another --output')
        if dst in seen:
            problems.append(f'{seen[dst]} and {f} would both be written to {dst}; upscale them into separate folders')
        seen[dst] = f
        pairs.append((f, dst))
    folder = out.parent if single else out
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is not None and (not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK)):
        problems.append(f'--output {out}: {existing} is not a writable folder')
    return pairs, problems


def _device(name):
    import torch
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f'--device {name!r}: {err}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {name}: CUDA is not available here; use --device cpu')
    return name


def _prepare(args):
    """(upscaler, pairs) or raise ValueError / CheckpointError listing what is wrong."""
    from agile_ir_plugin.checkpoint import CheckpointError
    from agile_ir_plugin.infer import Upscaler, load_model
    problems = []
    if args.tile is not None and args.tile <= args.tile_overlap:
        problems.append(f'--tile {args.tile} must be larger than --tile-overlap {args.tile_overlap}')
    pairs, found = collect(args.inputs, args.output)
    problems += found
    arch = kwargs = device = None
    try:
        arch, kwargs = _arch_args(args)
    except ValueError as err:
        problems.append(str(err))
    try:
        device = _device(args.device)
    except ValueError as err:
        problems.append(str(err))
    if problems:
        raise ValueError('\n'.join(problems))
    try:
        loaded = load_model(args.checkpoint, arch, args.scale, kwargs, args.param_key)
    except CheckpointError as err:
        raise ValueError(str(err)) from None
    upscaler = Upscaler(loaded, device, args.precision, args.tile, args.tile_overlap, args.pad_multiple)
    upscaler.check()
    return loaded, upscaler, pairs


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    import agile_ir_plugin  # noqa: F401  (registration: --arch names BasicSR's archs and ours)
    from tqdm import tqdm

    from agile_ir_plugin.infer import ImageError, read_image, write_png
    try:
        loaded, upscaler, pairs = _prepare(args)
    except ValueError as err:
        for line in str(err).splitlines():
            print(f'error: {line}', file=sys.stderr)
        return 1
    print(f'{loaded.describe()}; {args.precision} on {upscaler.device}'
          + (f', tiles of {args.tile} (overlap {args.tile_overlap})' if args.tile else ''))
    failed = 0
    for src, dst in tqdm(pairs, unit='image', disable=None, file=sys.stderr):
        try:
            image = read_image(src)
            array = upscaler(image)
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_png(dst, array)
        except (ImageError, OSError) as err:
            failed += 1
            tqdm.write(f'error: {err}', file=sys.stderr)
            continue
        except RuntimeError as err:  # e.g. out of memory on a large image: the others may still fit
            failed += 1
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            tqdm.write(f'error: {src}: the network failed on it ({first}); try --tile 256', file=sys.stderr)
            continue
        w, h = image.size
        kind = f'{image.bits}-bit {"gray" if image.gray else "RGB"}{"A" if image.alpha is not None else ""}'
        tqdm.write(f'saved {dst} ({w}x{h} -> {w * loaded.scale}x{h * loaded.scale}, {kind})')
    print(f'{len(pairs) - failed} of {len(pairs)} image(s) upscaled'
          + (f'; {failed} failed (see the error lines above)' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
