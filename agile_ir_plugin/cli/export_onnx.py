"""Export a trained model to ONNX with dynamic batch / height / width, checked with onnxruntime.

    python tools/export_onnx.py --arch ESC --arch-args '{"upscaling_factor": 4}' \\
        --ckpt experiments/x/models/net_g_latest.pth --param-key params_ema --out esc_x4.onnx

The ONNX graph is traced at ``--input-size`` (default 61 67: sizes that need padding to every
window, so the padded path is the one kept; see ``agile_ir_plugin.export``) and then checked with
onnxruntime at that size and at a second one (when onnxruntime is installed).
"""
import argparse
import json
import sys

import torch

from agile_ir_plugin.archs import ARCHS
from agile_ir_plugin.checkpoint import (CheckpointError, extract_state_dict, load_checkpoint, load_state_dict_exact,
                                        weight_sets)
from agile_ir_plugin.export import DEFAULT_OPSET, ExportError, export_onnx


def state_dict_from(ckpt, param_key, path):
    """``(state_dict, used key)`` of a checkpoint of any layout (``agile_ir_plugin.checkpoint``): the
    named weight set, which must exist; without a name, ``params_ema`` when present, else ``params``,
    else the bare / official state dict."""
    if not param_key:
        param_key = 'params_ema' if 'params_ema' in weight_sets(ckpt, path) else None
    return extract_state_dict(ckpt, param_key, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--arch', required=True, help=f'one of {", ".join(sorted(ARCHS))}')
    p.add_argument('--arch-args', default='{}', help='constructor keyword arguments as JSON')
    p.add_argument('--ckpt', help='checkpoint (.pth); without it the freshly initialised weights are exported')
    p.add_argument('--param-key', default=None,
                   help='weight set to export (params, params_ema, generator, generator_ema); it must exist. '
                        'Default: params_ema when present, else params, else the bare state dict')
    p.add_argument('--out', required=True, help='output .onnx file')
    p.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    p.add_argument('--input-size', type=int, nargs=2, default=(61, 67), metavar=('H', 'W'))
    p.add_argument('--in-chans', type=int, default=3)
    p.add_argument('--fixed-batch', action='store_true',
                   help='batch fixed to 1 (for a model whose graph cannot take a symbolic batch)')
    p.add_argument('--static-hw', action='store_true', help='height and width fixed to --input-size')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.arch not in ARCHS:
        sys.exit(f'error: unknown --arch {args.arch!r}; known: {", ".join(sorted(ARCHS))}')
    try:
        kwargs = json.loads(args.arch_args)
        if not isinstance(kwargs, dict):
            raise ValueError('not a JSON object')
    except ValueError as err:
        sys.exit(f'error: --arch-args must be a JSON object such as \'{{"dim": 64}}\' ({err})')
    try:
        model = ARCHS[args.arch](**kwargs)
    except TypeError as err:
        sys.exit(f'error: {args.arch} does not take --arch-args {kwargs}: {err}')
    if args.ckpt:
        try:
            state, used = state_dict_from(load_checkpoint(args.ckpt), args.param_key, args.ckpt)
            load_state_dict_exact(model, state, args.ckpt, used)
        except CheckpointError as err:
            sys.exit(f'error: {err}')
        print(f'weights: {args.ckpt} [{used or "state dict"}]')
    example = torch.rand(1, args.in_chans, *args.input_size)
    try:
        diff = export_onnx(model, args.out, example, opset=args.opset, dynamic_hw=not args.static_hw,
                           dynamic_batch=not args.fixed_batch)
    except ExportError as err:
        sys.exit(f'error: {err}')
    check = 'onnxruntime not installed: not checked' if diff is None else f'max |onnxruntime - torch| = {diff:.3g}'
    print(f'wrote {args.out} ({check})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
