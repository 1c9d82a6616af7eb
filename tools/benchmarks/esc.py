"""ESC family: params, FLOPs, latency and memory per attention backend and window size.

    python tools/benchmark.py esc [--device cpu] [--official /path/to/ESC] [--quick]

Measures, on one device and in one process (every timing a median after warm-up, every
comparison a ratio of numbers taken here):

1. params of ESC / ESC-light / ESC-FP (x2, x3, x4) and FLOPs (2 x MACs, attention included) of one
   forward producing a 1280x720 image;
2. the attention op alone at ESC x4's shapes (a 64x64 LR feature map, 4 heads of 16 channels) for
   windows 8/16/24/32: forward+backward latency and bytes kept for backward, per backend, and the
   ratio to the naive reference;
3. the whole ESC x4 per backend and window: a training step (forward + backward, 1x3x64x64 LR)
   with its saved-activation bytes (CPU) or peak memory (CUDA), and inference (1x3x128x128 LR);
4. with ``--official PATH`` (a checkout of github.com/dslisleedh/ESC, or its esc/archs/esc_arch.py;
   imported from there, never copied into this repository): our ESC x4 against the official code's
   Naive attention path with the same weights: training step, saved activations, inference.

Results: docs/benchmarks/esc.json, esc.md and esc.png (ratios to naive per window size).
"""
import importlib.util
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch

from agile_ir_plugin.archs import ESC, ESCFP
from agile_ir_plugin.archs.esc_arch import VARIANTS
from agile_ir_plugin.ops import attention as attention_fn
from agile_ir_plugin.ops.attention import available_backends, resolve_backend
from agile_ir_plugin.profiling import (count_macs, count_params, device_name, peak_cuda_memory,
                                       saved_activation_bytes)

from ._common import OUT_DIR, median_time, metadata, sample, sync, train_memory, train_step, write_results

MIB = 2 ** 20


def add_arguments(parser):
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--windows', type=int, nargs='+', default=[8, 16, 24, 32])
    parser.add_argument('--backends', nargs='+', default=None, help='default: every available backend')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per measurement (median)')
    parser.add_argument('--official', default=None, help='path of the official ESC repository (or esc_arch.py)')
    parser.add_argument('--official-repeats', type=int, default=5)
    parser.add_argument('--skip-sweep', action='store_true', help='only params/FLOPs (+ --official)')
    parser.add_argument('--quick', action='store_true', help='tiny sizes, for checking the script')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch default)')
    parser.add_argument('--name', default='esc', help='result file name in --out-dir')
    parser.add_argument('--out-dir', default=str(OUT_DIR))


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _infer(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def _infer_memory(model, x, device):
    return peak_cuda_memory(_infer(model, x), device=device) if torch.device(device).type == 'cuda' else None


def _fmt(value, unit=''):
    if value is None:
        return 'n/a'
    return f'{value:.3g}{unit}'


# ------------------------------------------------------------------------------------------------
# 1. params and FLOPs
# ------------------------------------------------------------------------------------------------
def params_and_flops(quick):
    rows = []
    out_h, out_w = (72, 128) if quick else (720, 1280)
    for variant, cfg in VARIANTS.items():
        cfg = dict(cfg)
        cls = ESC if cfg.pop('arch') == 'ESC' else ESCFP
        for scale in (2, 3, 4):
            model = cls(upscaling_factor=scale, attn_backend='naive', **cfg).eval()
            n = count_params(model)
            macs = None
            if scale == 4 or not quick:
                # on the meta device: shapes only, nothing computed; naive attention = matmuls counted
                meta = cls(upscaling_factor=scale, attn_backend='naive', **cfg).to('meta').eval()
                macs = count_macs(meta, torch.empty(1, 3, out_h // scale, out_w // scale, device='meta'))
            rows.append(dict(section='model', variant=variant, scale=scale, params=n,
                             output=f'{out_w}x{out_h}', gflops=None if macs is None else 2 * macs / 1e9))
    return rows


# ------------------------------------------------------------------------------------------------
# 2. attention op alone
# ------------------------------------------------------------------------------------------------
def attention_sweep(backends, windows, device, repeats, quick):
    rows = []
    lr = 32 if quick else 64
    heads, head_dim = 4, 16
    for ws in windows:
        n_win = max(1, (lr // ws) ** 2)
        shape = (n_win, heads, ws * ws, head_dim)
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(*shape, generator=g).to(device).requires_grad_() for _ in range(3))
        table = (torch.randn(1, heads, ws * ws, ws * ws, generator=g) * 0.02).to(device).requires_grad_()
        for backend in backends:
            ran = resolve_backend(backend, q, table, v)

            def step(backend=backend):
                out = attention_fn(q, k, v, table * 1.0, backend=backend)
                out.sum().backward()
                q.grad = k.grad = v.grad = table.grad = None

            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                t = median_time(step, repeats, device)
                if torch.device(device).type == 'cuda':
                    mem = peak_cuda_memory(step, device=device)
                else:
                    mem, _ = saved_activation_bytes(lambda: attention_fn(q, k, v, table, backend=backend))
            rows.append(dict(section='attention', window=ws, backend=backend, ran=ran,
                             tokens=ws * ws, windows=n_win, seconds=t, memory_bytes=mem))
    return rows


# ------------------------------------------------------------------------------------------------
# 3. whole network
# ------------------------------------------------------------------------------------------------
def network_sweep(backends, windows, device, repeats, quick):
    rows = []
    train_lr, infer_lr = (32, 48) if quick else (64, 128)
    x_train = sample((1, 3, train_lr, train_lr), device)
    target = sample((1, 3, 4 * train_lr, 4 * train_lr), device, seed=1)
    x_infer = sample((1, 3, infer_lr, infer_lr), device, seed=2)
    cfg = dict(VARIANTS['ESC'])
    cfg.pop('arch')
    for ws in windows:
        for backend in backends:
            torch.manual_seed(0)
            model = ESC(**dict(cfg, window_size=ws), upscaling_factor=4, attn_backend=backend).to(device)
            probe = torch.empty(1, 4, ws * ws, 16, device=device, requires_grad=True)
            bias = model.blocks[0].attn.position_bias()
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                ran_train = resolve_backend(backend, probe, bias, probe)
                with torch.no_grad():
                    ran_infer = resolve_backend(backend, probe, bias.detach(), probe)
                model.train()
                t_train = median_time(train_step(model, x_train, target), repeats, device)
                mem_train = train_memory(model, x_train, target, device)
                model.eval()
                t_infer = median_time(_infer(model, x_infer), repeats, device)
                mem_infer = _infer_memory(model, x_infer, device)
            rows.append(dict(section='network', window=ws, backend=backend, ran_train=ran_train,
                             ran_infer=ran_infer, train_seconds=t_train, train_memory_bytes=mem_train,
                             infer_seconds=t_infer, infer_memory_bytes=mem_infer,
                             train_input=list(x_train.shape), infer_input=list(x_infer.shape)))
            del model
    return rows


# ------------------------------------------------------------------------------------------------
# 4. against the official code
# ------------------------------------------------------------------------------------------------
def load_official_module(path):
    """Import the official esc_arch.py from ``path`` (file or repository) with a throw-away
    registry, so it neither needs nor touches BasicSR's (where our ESC is registered)."""
    path = Path(path)
    if path.is_dir():
        path = path / 'esc' / 'archs' / 'esc_arch.py'
    if not path.is_file():
        raise SystemExit(f'--official: no esc_arch.py at {path}; pass a checkout of github.com/dslisleedh/ESC')
    registry = types.ModuleType('basicsr.utils.registry')
    registry.ARCH_REGISTRY = types.SimpleNamespace(register=lambda *a, **k: (lambda cls: cls))
    names = ('basicsr', 'basicsr.utils', 'basicsr.utils.registry')
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update({'basicsr': types.ModuleType('basicsr'), 'basicsr.utils': types.ModuleType('basicsr.utils'),
                        'basicsr.utils.registry': registry})
    try:
        spec = importlib.util.spec_from_file_location('official_esc_arch', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    return module


def official_comparison(path, device, repeats, quick):
    module = load_official_module(path)
    cfg = dict(VARIANTS['ESC'])
    cfg.pop('arch')
    torch.manual_seed(0)
    official = module.ESC(upscaling_factor=4, attn_type='Naive', **cfg).to(device)
    ours = ESC(upscaling_factor=4, **cfg).to(device)
    ours.load_state_dict(official.state_dict(), strict=True)
    train_lr, infer_lr = (32, 48) if quick else (64, 128)
    x_train = sample((1, 3, train_lr, train_lr), device)
    target = sample((1, 3, 4 * train_lr, 4 * train_lr), device, seed=1)
    x_infer = sample((1, 3, infer_lr, infer_lr), device, seed=2)
    nets = {'official Naive': official, 'ours (auto)': ours}

    # the same function: outputs agree
    for net in nets.values():
        net.eval()
    with torch.no_grad():
        diff = (official(x_infer) - ours(x_infer)).abs().max().item()

    result = {name: {} for name in nets}
    for name, net in nets.items():
        net.train()
        result[name]['train_memory_bytes'] = train_memory(net, x_train, target, device)
    # interleaved timing: both see the same machine state
    for phase, x, fn_of in (('train', x_train, lambda n: train_step(n, x_train, target)),
                            ('infer', x_infer, lambda n: _infer(n, x_infer))):
        fns = {}
        for name, net in nets.items():
            net.train(phase == 'train')
            fns[name] = fn_of(net)
            fns[name]()  # warm-up
        times = {name: [] for name in nets}
        cpu = {name: [] for name in nets}
        for _ in range(repeats):
            for name, fn in fns.items():
                sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                sync(device)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        for name in nets:
            result[name][f'{phase}_seconds'] = statistics.median(times[name])
            result[name][f'{phase}_all_seconds'] = times[name]
            result[name][f'{phase}_cpu_seconds'] = statistics.median(cpu[name])  # process CPU time, all threads
    rows = [dict(section='official', implementation=name, **values) for name, values in result.items()]
    o, u = result['official Naive'], result['ours (auto)']
    ratios = dict(section='official_ratio', train_speedup=o['train_seconds'] / u['train_seconds'],
                  infer_speedup=o['infer_seconds'] / u['infer_seconds'],
                  memory_ratio=u['train_memory_bytes'] / o['train_memory_bytes'], max_abs_output_diff=diff,
                  train_input=list(x_train.shape), infer_input=list(x_infer.shape))
    return rows + [ratios]


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def markdown(rows, device, backends):
    lines = ['# ESC benchmark', '']
    model_rows = [r for r in rows if r['section'] == 'model']
    if model_rows:
        out = model_rows[0]['output']
        lines += ['## Parameters and FLOPs', '',
                  f'FLOPs = 2 x MACs of one forward producing a {out} image (attention included).', '',
                  '| variant | scale | params | GFLOPs |', '|---|---|---|---|']
        lines += [f"| {r['variant']} | x{r['scale']} | {r['params']:,} | {_fmt(r['gflops'])} |" for r in model_rows]
        lines.append('')
    mem_word = 'peak memory' if torch.device(device).type == 'cuda' else 'bytes kept for backward'
    att = [r for r in rows if r['section'] == 'attention']
    if att:
        lines += ['## Attention op alone (ESC x4 shapes: 64x64 LR map, 4 heads x 16 channels)', '',
                  f'Forward + backward with a learnable (1, H, N, N) bias; memory = {mem_word}. '
                  'Ratios are naive / backend (higher is better).', '',
                  '| window | backend (ran) | time (ms) | memory (MiB) | speed-up vs naive | memory saving vs naive |',
                  '|---|---|---|---|---|---|']
        for r in att:
            base = next(b for b in att if b['window'] == r['window'] and b['backend'] == 'naive')
            mem_ratio = base['memory_bytes'] / r['memory_bytes'] if r['memory_bytes'] else None
            lines.append(f"| {r['window']} | {r['backend']} ({r['ran']}) | {r['seconds'] * 1e3:.1f} | "
                         f"{_fmt(r['memory_bytes'] / MIB if r['memory_bytes'] is not None else None)} | "
                         f"{base['seconds'] / r['seconds']:.2f}x | {_fmt(mem_ratio, 'x')} |")
        lines.append('')
    net = [r for r in rows if r['section'] == 'network']
    if net:
        lines += ['## Whole ESC x4 per backend and window', '',
                  f"Training step = forward + L1 + backward on {net[0]['train_input']}; inference on "
                  f"{net[0]['infer_input']}. Memory = {mem_word} (training); ratios are naive / backend.", '',
                  '| window | backend (train / infer ran) | train step (s) | train memory (MiB) | inference (s) | '
                  'train speed-up | memory saving | inference speed-up |', '|---|---|---|---|---|---|---|---|']
        for r in net:
            base = next(b for b in net if b['window'] == r['window'] and b['backend'] == 'naive')
            lines.append(
                f"| {r['window']} | {r['backend']} ({r['ran_train']} / {r['ran_infer']}) | {r['train_seconds']:.3f} | "
                f"{r['train_memory_bytes'] / MIB:.0f} | {r['infer_seconds']:.3f} | "
                f"{base['train_seconds'] / r['train_seconds']:.2f}x | "
                f"{base['train_memory_bytes'] / r['train_memory_bytes']:.2f}x | "
                f"{base['infer_seconds'] / r['infer_seconds']:.2f}x |")
        lines.append('')
    off = [r for r in rows if r['section'] == 'official']
    if off:
        ratio = next(r for r in rows if r['section'] == 'official_ratio')
        lines += ['## ESC x4: ours vs the official code (Naive attention), same weights, same process', '',
                  f"Training step on {ratio['train_input']} LR (forward + L1 + backward), inference on "
                  f"{ratio['infer_input']} LR; timings interleaved, medians. Max |output difference| "
                  f"{ratio['max_abs_output_diff']:.2e}.", '',
                  f'| implementation | train step (s) | train step CPU time (s) | {mem_word} (MiB) | inference (s) | '
                  'inference CPU time (s) |', '|---|---|---|---|---|---|']
        for r in off:
            lines.append(f"| {r['implementation']} | {r['train_seconds']:.3f} | {r['train_cpu_seconds']:.3f} | "
                         f"{r['train_memory_bytes'] / MIB:.0f} | {r['infer_seconds']:.3f} | {r['infer_cpu_seconds']:.3f} |")
        lines += ['', f"Training step {ratio['train_speedup']:.2f}x faster (target >= 2x), saved activations "
                      f"{ratio['memory_ratio']:.2f}x (target <= 0.5x), inference {ratio['infer_speedup']:.2f}x "
                      f"faster (target >= 2x).", '']
    lines += ['Backends available here: ' + ', '.join(backends) + '. "ran" = the backend that actually ran '
              '(an explicit backend that cannot take the inputs falls back to what auto picks, e.g. flex '
              'has no CPU backward).', '']
    return '\n'.join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    att = [r for r in rows if r['section'] == 'attention']
    net = [r for r in rows if r['section'] == 'network']
    panels = [('attention op: speed-up vs naive', att, lambda r, b: b['seconds'] / r['seconds']),
              ('attention op: memory saving vs naive', att,
               lambda r, b: b['memory_bytes'] / r['memory_bytes'] if r['memory_bytes'] else float('nan')),
              ('ESC x4 training step: speed-up vs naive', net, lambda r, b: b['train_seconds'] / r['train_seconds']),
              ('ESC x4 training: memory saving vs naive', net,
               lambda r, b: b['train_memory_bytes'] / r['train_memory_bytes']),
              ('ESC x4 inference: speed-up vs naive', net, lambda r, b: b['infer_seconds'] / r['infer_seconds'])]
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    axes = [axes] if len(panels) == 1 else axes
    for ax, (title, data, ratio) in zip(axes, panels):
        for backend in dict.fromkeys(r['backend'] for r in data):
            pts = []
            for r in data:
                if r['backend'] == backend:
                    base = next(b for b in data if b['window'] == r['window'] and b['backend'] == 'naive')
                    pts.append((r['window'], ratio(r, base)))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker='o', label=backend)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('window size')
        ax.set_xticks(sorted({r['window'] for r in data}))
        ax.axhline(1.0, color='grey', lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(args):
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = args.backends or available_backends()
    if 'naive' not in backends:
        backends = ['naive'] + list(backends)
    windows = [8, 16] if args.quick else args.windows
    repeats = 1 if args.quick else args.repeats
    print(f'device: {device_name(device)}; backends: {backends}; windows: {windows}', flush=True)
    rows = params_and_flops(args.quick)
    print('params/FLOPs done', flush=True)
    if not args.skip_sweep:
        rows += attention_sweep(backends, windows, device, repeats, args.quick)
        print('attention sweep done', flush=True)
        rows += network_sweep(backends, windows, device, repeats, args.quick)
        print('network sweep done', flush=True)
    if args.official:
        rows += official_comparison(args.official, device, 1 if args.quick else args.official_repeats, args.quick)
        print('official comparison done', flush=True)
    meta = metadata(device)
    meta['threads'] = torch.get_num_threads()
    text = markdown(rows, device, backends)
    json_path, md_path = write_results(args.name, meta, rows, text, out_dir=args.out_dir)
    png = plot(rows, Path(args.out_dir) / f'{args.name}.png')
    if png is not None:
        with open(md_path, 'a') as f:
            f.write(f'\n![ratios to naive per window size]({args.name}.png)\n')
    print(md_path.read_text())
    return 0
