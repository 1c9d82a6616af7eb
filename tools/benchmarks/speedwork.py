"""Eager speed work, measured: channels_last and bf16 autocast against the fp32 default.

``python tools/benchmark.py speedwork [--archs ESC AgileIR] [--size 128] [--train-size 64] [--threads N]``

Per arch (paper x4 configurations) and variant — fp32 (the default), ``channels_last`` (model and
input in NHWC), bf16 autocast, both — the inference latency (batch 1, LR ``--size``) and the
training step (forward + L1 + backward + Adam, batch ``--train-batch``, LR ``--train-size``),
medians of interleaved runs after a warm-up in one process, with the ratio to fp32 and the largest
output difference to fp32.  A variant is worth enabling only where its ratio is > 1.  Writes
``docs/benchmarks/<--name>.{json,md}`` (default ``speedwork``).
"""
import contextlib
import copy
import statistics
import time

import torch

from ._common import ARCH_ARGS, OUT_DIR, build_model, metadata, sync, write_results

VARIANTS = {'fp32': (False, None), 'channels_last': (True, None), 'bf16 autocast': (False, torch.bfloat16),
            'channels_last + bf16': (True, torch.bfloat16)}


def add_arguments(parser):
    parser.add_argument('--archs', nargs='+', default=['ESC', 'AgileIR'], choices=sorted(ARCH_ARGS))
    parser.add_argument('--size', type=int, default=128, help='inference input H = W')
    parser.add_argument('--train-size', type=int, default=64)
    parser.add_argument('--train-batch', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--name', default='speedwork')
    parser.add_argument('--out-dir', default=str(OUT_DIR))


def _autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def measure(arch, args):
    device = args.device
    base = build_model(arch, device)
    models, opts = {}, {}
    for name, (cl, _) in VARIANTS.items():
        m = copy.deepcopy(base)
        models[name] = m.to(memory_format=torch.channels_last) if cl else m
        opts[name] = torch.optim.Adam(models[name].parameters(), 1e-4)
    x = torch.rand(1, 3, args.size, args.size, device=device)
    s, b = args.train_size, args.train_batch
    xt = torch.rand(b, 3, s, s, device=device)
    with torch.no_grad():
        y = torch.rand_like(base(xt[:1])).repeat(b, 1, 1, 1)

    def infer(name):
        cl, dtype = VARIANTS[name]
        inp = x.to(memory_format=torch.channels_last) if cl else x
        with torch.inference_mode(), _autocast(device, dtype):
            return models[name].eval()(inp).float()

    def train(name):
        cl, dtype = VARIANTS[name]
        inp = xt.to(memory_format=torch.channels_last) if cl else xt
        m = models[name].train()
        opts[name].zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            out = m(inp)
        (out.float() - y).abs().mean().backward()
        opts[name].step()

    reference = infer('fp32')
    diffs = {name: (infer(name) - reference).abs().max().item() for name in VARIANTS}
    rows = []
    for phase, fn in (('inference', infer), ('train step', train)):
        times = {name: [] for name in VARIANTS}
        for r in range(args.repeats + 1):
            order = list(VARIANTS) if r % 2 else list(VARIANTS)[::-1]
            for name in order:
                sync(device)
                start = time.perf_counter()
                fn(name)
                sync(device)
                if r:
                    times[name].append(time.perf_counter() - start)
        base_t = statistics.median(times['fp32'])
        for name, ts in times.items():
            rows.append({'arch': arch, 'phase': phase, 'variant': name,
                         'input': f'1x3x{args.size}x{args.size}' if phase == 'inference' else f'{b}x3x{s}x{s}',
                         'median_seconds': statistics.median(ts), 'speedup_vs_fp32': base_t / statistics.median(ts),
                         'max_abs_diff_vs_fp32': diffs[name]})
            print(rows[-1], flush=True)
    return rows


def markdown(rows):
    lines = ['# Eager speed work: channels_last and bf16 autocast vs fp32', '',
             'Medians of interleaved runs after a warm-up, one process; speed-up = fp32 time / variant time; '
             'difference = largest |output - fp32 output| at inference.', '',
             '| arch | phase | input | variant | median (s) | speed-up vs fp32 | max abs diff |',
             '|---|---|---|---|---:|---:|---:|']
    for r in rows:
        lines.append(f"| {r['arch']} | {r['phase']} | {r['input']} | {r['variant']} | {r['median_seconds']:.3f} | "
                     f"{r['speedup_vs_fp32']:.2f}x | {r['max_abs_diff_vs_fp32']:.1e} |")
    return '\n'.join(lines) + '\n'


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = metadata(args.device)
    meta['threads'] = torch.get_num_threads()
    rows = []
    for arch in args.archs:
        rows += measure(arch, args)
    json_path, md_path = write_results(args.name, meta, rows, markdown(rows), out_dir=args.out_dir)
    print(f'wrote {json_path} and {md_path}')
