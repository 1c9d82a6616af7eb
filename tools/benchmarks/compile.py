"""torch.compile of whole models vs eager: compile time, graphs, recompiles, speed, equal outputs.

``python tools/benchmark.py compile [--archs ESC AgileIR ...] [--size 100 84 --size2 110 90] [--threads N]``

Per arch (the paper's x4 configuration; Restormer/MST++ at their defaults):

- inference, ``torch.compile(model, dynamic=True)``: the first call's time (trace + Inductor +
  run) at LR ``--size``, the compiled latency (median of ``--repeats`` after warm-up) against eager
  in the same process, then a second size (``--size2``, not a multiple of any window) run through
  the same compiled model: the count of Dynamo graphs says whether it recompiled.  A compiled model
  recompiles once per size *class*, not per size: square vs not (duck sizing), below/above CPU
  conv's backend switch (``3*H*W > 20480``), each side a multiple of the window or not (Inductor
  guards on whether the crop after padding is empty); both default sizes share one class;
- training step (forward + L1 + backward + Adam) at a fixed patch (``--train-size``, batch
  ``--train-batch``), ``torch.compile(model)`` with static shapes (training patches have one
  size); first-step time, median step time against eager, largest gradient difference.

Recorded as measured: on CPU, Inductor's C++ compile of a whole model takes minutes.
Writes ``docs/benchmarks/<--name>.{json,md}`` (default ``compile``).
"""
import copy
import statistics
import time
import warnings

import torch

from ._common import ARCH_ARGS, OUT_DIR, SCALE, build_model, metadata, sync, write_results



def add_arguments(parser):
    parser.add_argument('--archs', nargs='+', default=['ESC', 'AgileIR'], choices=sorted(ARCH_ARGS))
    # non-square (a square first size makes Dynamo assume H == W: "duck sizing"), above CPU conv's
    # backend switch (3*H*W > 20480) and neither side a multiple of the window (Inductor guards on
    # whether the crop after padding is empty): the size classes a compiled model recompiles for once
    parser.add_argument('--size', type=int, nargs=2, default=[100, 84], help='inference input H W (LR for SR)')
    parser.add_argument('--size2', type=int, nargs=2, default=[110, 90], help='second inference size (H W)')
    parser.add_argument('--train-size', type=int, default=48, help='training patch (input side)')
    parser.add_argument('--train-batch', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--name', default='compile')
    parser.add_argument('--out-dir', default=str(OUT_DIR))


def _timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def _graphs():
    from torch._dynamo.utils import counters
    return counters['stats']['unique_graphs']


def inference(arch, args):
    device = args.device
    model = build_model(arch, device).eval()
    compiled = torch.compile(model, dynamic=True)
    torch._dynamo.reset()
    rows = []
    graphs_before = _graphs()
    for label, (h, w) in (('first size', tuple(args.size)), ('second size', tuple(args.size2))):
        x = torch.rand(1, 3, h, w, device=device)
        with torch.inference_mode():
            first, out_c = _timed(lambda: compiled(x), device)
            out_e = model(x)
            eager, comp = [], []
            for r in range(args.repeats + 1):  # interleaved, first round is a warm-up
                order = (('eager', model), ('compiled', compiled)) if r % 2 else (('compiled', compiled), ('eager', model))
                for name, fn in order:
                    t, _ = _timed(lambda fn=fn: fn(x), device)
                    if r:
                        (eager if name == 'eager' else comp).append(t)
        rows.append({'section': 'inference', 'arch': arch, 'size': label, 'input': f'1x3x{h}x{w}',
                     'first_call_seconds': first, 'eager_seconds': statistics.median(eager),
                     'compiled_seconds': statistics.median(comp),
                     'speedup': statistics.median(eager) / statistics.median(comp),
                     'graphs_so_far': _graphs() - graphs_before,
                     'max_abs_diff': (out_c.float() - out_e.float()).abs().max().item()})
        print(rows[-1], flush=True)
    return rows


def training(arch, args):
    device = args.device
    model = build_model(arch, device).train()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model)
    torch._dynamo.reset()
    s, b = args.train_size, args.train_batch
    x = torch.rand(b, 3, s, s, device=device)
    y = torch.rand(b, model(x[:1]).shape[1], s * SCALE[arch], s * SCALE[arch], device=device)
    opts = {'compiled': torch.optim.Adam(model.parameters(), 1e-4),
            'eager': torch.optim.Adam(reference.parameters(), 1e-4)}
    fns = {'compiled': compiled, 'eager': reference}

    def step(name):
        opts[name].zero_grad(set_to_none=True)
        (fns[name](x) - y).abs().mean().backward()

    graphs_before = _graphs()
    first, _ = _timed(lambda: step('compiled'), device)
    step('eager')
    grad_diff = max((p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), reference.parameters())
                    if p.grad is not None)
    times = {'compiled': [], 'eager': []}
    for r in range(args.repeats + 1):
        for name in (('compiled', 'eager') if r % 2 else ('eager', 'compiled')):
            t, _ = _timed(lambda name=name: (step(name), opts[name].step()), device)
            if r:
                times[name].append(t)
    row = {'section': 'training', 'arch': arch, 'input': f'{b}x3x{s}x{s}', 'first_call_seconds': first,
           'eager_seconds': statistics.median(times['eager']), 'compiled_seconds': statistics.median(times['compiled']),
           'speedup': statistics.median(times['eager']) / statistics.median(times['compiled']),
           'graphs_so_far': _graphs() - graphs_before, 'max_abs_grad_diff': grad_diff}
    print(row, flush=True)
    return [row]


def markdown(rows, meta):
    lines = ['# torch.compile vs eager', '',
             '`torch.compile` (Inductor, default mode) of the whole model. *first call* = trace + compile + one run. '
             'Latencies: median of interleaved runs after a warm-up, same process. *graphs* = Dynamo graphs compiled '
             'so far for that model (1 after the second size = no recompile).', '',
             '## Inference, `dynamic=True`', '',
             '| arch | input | first call (s) | eager (s) | compiled (s) | speed-up | graphs | max abs diff |',
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        if r['section'] == 'inference':
            lines.append(f"| {r['arch']} | {r['input']} ({r['size']}) | {r['first_call_seconds']:.1f} | "
                         f"{r['eager_seconds']:.3f} | {r['compiled_seconds']:.3f} | {r['speedup']:.2f}x | "
                         f"{r['graphs_so_far']} | {r['max_abs_diff']:.1e} |")
    train = [r for r in rows if r['section'] == 'training']
    if train:
        lines += ['', '## Training step (forward + L1 + backward + Adam), static shapes', '',
                  '| arch | input | first step (s) | eager (s) | compiled (s) | speed-up | graphs | max grad diff |',
                  '|---|---|---:|---:|---:|---:|---:|---:|']
        for r in train:
            lines.append(f"| {r['arch']} | {r['input']} | {r['first_call_seconds']:.1f} | {r['eager_seconds']:.3f} | "
                         f"{r['compiled_seconds']:.3f} | {r['speedup']:.2f}x | {r['graphs_so_far']} | "
                         f"{r['max_abs_grad_diff']:.1e} |")
    return '\n'.join(lines) + '\n'


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore', category=UserWarning)
    meta = metadata(args.device)
    meta['threads'] = torch.get_num_threads()
    rows = []
    for arch in args.archs:
        rows += inference(arch, args)
        if not args.skip_train:
            rows += training(arch, args)
    json_path, md_path = write_results(args.name, meta, rows, markdown(rows, meta), out_dir=args.out_dir)
    print(f'wrote {json_path} and {md_path}')
