"""GPU suite in one command: CUDA tests, ESC backends (+ official Flex), AgileIR vs SwinIR-light, GLMHA hosts, compile, DDP.

``python tools/benchmark.py gpu [--official PATH] [--official-restormer PATH] [--official-mstpp PATH]``
runs, on one CUDA device, in this order (each section timed; a section that would start after
``--budget-s`` is skipped and says so; the paper sizes fit about 8 minutes on one H100-class GPU):

1. ``tests``: the CUDA tests (``pytest -m gpu``);
2. ``esc``: ESC x4 with ``attn_backend`` flex, sdpa (memory-efficient / cuDNN), naive, and the
   official code's Flex path with ``--official`` (a checkout of github.com/dslisleedh/ESC, never
   copied here), fp32 and bf16 autocast: training step (batch 16, LR 64) and its CUDA peak memory,
   inference to a 1280x720 output (LR 320x180), the output's difference to naive's;
3. ``agileir``: AgileIR vs SwinIR-light (BasicSR) CUDA peak training memory at batch 16/32/64
   (LR 64, x4) and the step time;
4. ``hosts``: Restormer / MST++ with GLMHA vs with their own attention (and vs the official code
   with ``--official-restormer`` / ``--official-mstpp``): training step;
5. ``compile``: ``torch.compile`` of ESC x4 (inference and a training step) vs eager;
6. ``ddp``: 2-process nccl DDP training steps of ESC x4 when two GPUs exist.

Results: ``gpu_<device>.{json,md}`` in ``--out-dir`` with the issue's GPU targets, met or not.
``--dry-run`` runs every section on CPU at tiny sizes in seconds (tests: the gpu-marked tests of
``tests/ops``; compile: Dynamo with the ``eager`` backend; DDP: 2 gloo processes) so the suite
cannot rot; its figures are not measurements.
"""
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from agile_ir_plugin.archs import ESC, AgileIR, MSTPlusPlus, Restormer
from agile_ir_plugin.archs.esc_arch import VARIANTS
from agile_ir_plugin.ops.attention import choose_backend

from ._common import OUT_DIR, median_time, metadata, sample, sync, train_memory, train_step, write_results

REPO = Path(__file__).resolve().parents[2]
MIB = 2 ** 20
SECTIONS = ('tests', 'esc', 'agileir', 'hosts', 'compile', 'ddp')
ESC_BACKENDS = ('flex', 'sdpa', 'naive')
# (full, dry run) sizes
SIZES = {
    'esc_train': ((16, 64), (1, 16)), 'esc_infer_lr': ((180, 320), (12, 20)),
    'agile_batches': ((16, 32, 64), (1, 2)), 'agile_patch': (64, 16),
    'host_train': ((8, 128), (1, 16)), 'ddp_batch': (16, 1), 'repeats': (10, 2),
}
ESC_DRY = dict(dim=16, pdim=8, kernel_size=5, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2, exp_ratio=1.25)
SWIN_LIGHT = dict(in_chans=3, img_size=64, window_size=8, img_range=1., depths=[6, 6, 6, 6], embed_dim=60,
                  num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv')
SWIN_DRY = dict(SWIN_LIGHT, depths=[2], embed_dim=12, num_heads=[2], window_size=4)
HOSTS_DRY = {'Restormer': dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1),
             'MST++': dict(stage=1)}


def add_arguments(parser):
    parser.add_argument('--dry-run', action='store_true', help='every section on CPU at tiny sizes (CI)')
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument('--official', default=None, help='official ESC checkout (or its esc/archs/esc_arch.py)')
    parser.add_argument('--official-restormer', default=None, metavar='PATH')
    parser.add_argument('--official-mstpp', default=None, metavar='PATH')
    parser.add_argument('--budget-s', type=float, default=480, help='start no section after this many seconds')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--name', default=None, help='result name (default gpu_<device> / gpu_dryrun)')
    parser.add_argument('--out-dir', default=str(OUT_DIR))


def _size(key, dry):
    return SIZES[key][1 if dry else 0]


def _autocast(device, dtype):
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == 'bf16')


def _step_and_memory(model, x, target, device, dtype, repeats):
    """(median train-step seconds, peak CUDA bytes / saved-activation bytes on CPU)."""
    step = train_step(model, x, target)

    def run():
        with _autocast(device, dtype):
            step()
    seconds = median_time(run, repeats, device)
    with _autocast(device, dtype):
        memory = train_memory(model, x, target, device)
    return seconds, memory


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------
def section_tests(args):
    cmd = [sys.executable, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider']
    cmd.append(str(REPO / 'tests' / 'ops') if args.dry_run else str(REPO / 'tests'))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    tail = (proc.stdout.strip().splitlines() or [''])[-1]
    counts = {k: int(n) for n, k in re.findall(r'(\d+) (passed|failed|skipped|deselected|error)', tail)}
    return [dict(section='tests', command=' '.join(cmd[1:]), returncode=proc.returncode, summary=tail, **counts)]


def _esc_models(args, official_module):
    cfg = dict(VARIANTS['ESC'])
    cfg.pop('arch')
    if args.dry_run:
        cfg = dict(ESC_DRY)
    torch.manual_seed(0)
    ref = ESC(upscaling_factor=4, attn_backend='naive', **cfg)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    models = {}
    for backend in ESC_BACKENDS:
        models[f'ours {backend}'] = ESC(upscaling_factor=4, attn_backend=backend, **cfg)
    if official_module is not None:
        models['official Flex'] = official_module.ESC(upscaling_factor=4, attn_type='Flex', **cfg)
    for model in models.values():
        model.load_state_dict(ref.state_dict(), strict=True)
        model.to(args.device)
    return models


def _ran(model, x, grad):
    """The backend the dispatcher runs for this model's window attention (``official``: as named)."""
    attn = getattr(getattr(model, 'blocks', [None])[0], 'attn', None)
    if not hasattr(attn, 'attn_backend'):
        return 'official'
    n = attn.window_size ** 2
    q = torch.empty(1, attn.num_heads, n, attn.dim // attn.num_heads, device=x.device, requires_grad=grad)
    bias = attn.position_bias()
    with torch.set_grad_enabled(grad), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return choose_backend(attn.attn_backend, q, bias if grad else bias.detach(), q)[0]


def section_esc(args):
    official_module = None
    if args.official:
        from .esc import load_official_module
        official_module = load_official_module(args.official)
    models = _esc_models(args, official_module)
    batch, lr = _size('esc_train', args.dry_run)
    x = sample((batch, 3, lr, lr), args.device)
    target = sample((batch, 3, 4 * lr, 4 * lr), args.device, seed=1)
    h, w = _size('esc_infer_lr', args.dry_run)
    x_infer = sample((1, 3, h, w), args.device, seed=2)
    repeats = _size('repeats', args.dry_run)
    rows = []
    for dtype in ('fp32', 'bf16'):
        naive = models['ours naive'].eval()
        with torch.inference_mode(), _autocast(args.device, dtype):
            reference = naive(x_infer).float()
        for name, model in models.items():
            row = dict(section='esc', implementation=name, dtype=dtype, train_input=list(x.shape),
                       infer_input=list(x_infer.shape))
            try:
                model.train()
                row['train_backend'] = _ran(model, x, True)
                row['train_seconds'], row['train_memory_bytes'] = _step_and_memory(model, x, target, args.device,
                                                                                    dtype, repeats)
                model.eval()
                row['infer_backend'] = _ran(model, x_infer, False)
                with torch.inference_mode(), _autocast(args.device, dtype):
                    row['infer_ms'] = 1e3 * median_time(lambda: model(x_infer), repeats, args.device)
                    out = model(x_infer).float()
                row['max_abs_diff_vs_naive'] = (out - reference).abs().max().item()
            except Exception as err:  # recorded, not hidden: the row says what failed
                row['error'] = f'{type(err).__name__}: {str(err).splitlines()[0][:300]}'
            rows.append(row)
    return rows


def section_agileir(args):
    import agile_ir_plugin  # noqa: F401  (compat fixes before basicsr)
    from basicsr.archs.swinir_arch import SwinIR
    cfg = SWIN_DRY if args.dry_run else SWIN_LIGHT
    torch.manual_seed(0)
    models = {'SwinIR-light': SwinIR(upscale=4, **cfg).to(args.device),
              'AgileIR': AgileIR(upscale=4, **cfg).to(args.device)}
    patch, repeats = _size('agile_patch', args.dry_run), _size('repeats', args.dry_run)
    rows = []
    for batch in _size('agile_batches', args.dry_run):
        x = sample((batch, 3, patch, patch), args.device)
        target = sample((batch, 3, 4 * patch, 4 * patch), args.device, seed=1)
        for name, model in models.items():
            row = dict(section='agileir', model=name, batch=batch, patch=patch,
                       params=sum(p.numel() for p in model.parameters()))
            try:
                row['train_seconds'], row['train_memory_bytes'] = _step_and_memory(model, x, target, args.device,
                                                                                    'fp32', repeats)
            except torch.OutOfMemoryError as err:
                row['error'] = f'OutOfMemoryError: {str(err).splitlines()[0][:200]}'
                torch.cuda.empty_cache()
            rows.append(row)
    return rows


def section_hosts(args):
    from .hosts import build_pair, load_official
    batch, size = _size('host_train', args.dry_run)
    repeats = _size('repeats', args.dry_run)
    rows = []
    for host, cls, own, official_path in (('Restormer', Restormer, 'mdta', args.official_restormer),
                                          ('MST++', MSTPlusPlus, 'smsa', args.official_mstpp)):
        extra = HOSTS_DRY[host] if args.dry_run else {}
        out_ch = 3 if host == 'Restormer' else 31
        torch.manual_seed(0)
        models = {f'{host} ({own})': cls(attn=own, **extra), f'{host} + GLMHA': cls(attn='glmha', **extra)}
        if official_path and not args.dry_run:
            official, ours = build_pair(host, load_official(host, official_path)[0], args.device)
            models = {f'{host} official': official, f'{host} ({own})': ours, f'{host} + GLMHA': models[f'{host} + GLMHA']}
        x = sample((batch, 3, size, size), args.device)
        target = sample((batch, out_ch, size, size), args.device, seed=1)
        for name, model in models.items():
            model.to(args.device).train()
            seconds, memory = _step_and_memory(model, x, target, args.device, 'fp32', repeats)
            rows.append(dict(section='hosts', host=host, model=name, batch=batch, size=size, train_seconds=seconds,
                             train_memory_bytes=memory))
    return rows


def section_compile(args):
    cfg = dict(ESC_DRY) if args.dry_run else {k: v for k, v in VARIANTS['ESC'].items() if k != 'arch'}
    backend = 'eager' if args.dry_run else 'inductor'  # dry run: Dynamo's capture only (Inductor on CPU is minutes)
    repeats = _size('repeats', args.dry_run)
    rows = []
    torch.manual_seed(0)
    model = ESC(upscaling_factor=4, **cfg).to(args.device)
    h, w = _size('esc_infer_lr', args.dry_run)
    batch, lr = _size('esc_train', args.dry_run)
    x_infer = sample((1, 3, h, w), args.device, seed=2)
    x, target = sample((batch, 3, lr, lr), args.device), sample((batch, 3, 4 * lr, 4 * lr), args.device, seed=1)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    for phase in ('inference', 'train'):
        if phase == 'inference':
            model.eval()
            fns = {k: (lambda m=m: _no_grad(m, x_infer)) for k, m in (('eager', model), ('compiled', compiled))}
        else:
            model.train()
            fns = {k: train_step(m, x, target) for k, m in (('eager', model), ('compiled', compiled))}
        start = time.perf_counter()
        fns['compiled']()
        sync(args.device)
        first = time.perf_counter() - start
        times = {k: median_time(fn, repeats, args.device) for k, fn in fns.items()}
        rows.append(dict(section='compile', phase=phase, compile_backend=backend, first_call_seconds=first,
                         eager_seconds=times['eager'], compiled_seconds=times['compiled'],
                         speedup=times['eager'] / times['compiled']))
    return rows


def _no_grad(model, x):
    with torch.no_grad():
        return model(x)


def _ddp_worker(rank, world, backend, port, dry, result_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = f'cuda:{rank}' if backend == 'nccl' else 'cpu'
    if backend == 'nccl':
        torch.cuda.set_device(rank)
    cfg = dict(ESC_DRY) if dry else {k: v for k, v in VARIANTS['ESC'].items() if k != 'arch'}
    torch.manual_seed(0)
    model = DistributedDataParallel(ESC(upscaling_factor=4, **cfg).to(device))
    batch, lr = SIZES['ddp_batch'][1 if dry else 0], _size('esc_train', dry)[1]
    x = sample((batch, 3, lr, lr), device, seed=rank)
    target = sample((batch, 3, 4 * lr, 4 * lr), device, seed=100 + rank)
    seconds = median_time(train_step(model, x, target), _size('repeats', dry), device)
    weight = model.module.to_img.weight.grad.detach().flatten()[:8].cpu()  # all-reduced: equal on every rank
    gathered = [torch.zeros_like(weight) for _ in range(world)]
    dist.all_gather_object(gathered, weight)
    if rank == 0:
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        Path(result_path).write_text(f'{seconds} {int(same)}')
    dist.destroy_process_group()


def section_ddp(args):
    world = 2
    if args.dry_run:
        backend = 'gloo'
    elif torch.cuda.device_count() >= 2:
        backend = 'nccl'
    else:
        return [dict(section='ddp', status=f'skipped: {torch.cuda.device_count()} GPU(s), 2 needed')]
    import tempfile

    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / 'ddp.txt'
        port = 29500 + os.getpid() % 1000
        mp.spawn(_ddp_worker, args=(world, backend, port, args.dry_run, str(result)), nprocs=world, join=True)
        seconds, same = result.read_text().split()
    return [dict(section='ddp', backend=backend, world_size=world, train_seconds=float(seconds),
                 grads_equal_across_ranks=bool(int(same)))]


# ------------------------------------------------------------------------------------------------
# targets and report
# ------------------------------------------------------------------------------------------------
def targets(rows, dry):
    """[(target, measured, status)] for the issue's GPU targets."""
    def get(section, **key):
        return next((r for r in rows if r.get('section') == section and all(r.get(k) == v for k, v in key.items())
                     and 'error' not in r), None)
    out = []
    best = min((r for r in rows if r.get('section') == 'esc' and r.get('implementation', '').startswith('ours')
                and 'train_seconds' in r), key=lambda r: r['train_seconds'], default=None)
    flex = get('esc', implementation='official Flex', dtype=best['dtype']) if best else None
    if best and flex:
        speed, mem = flex['train_seconds'] / best['train_seconds'], best['train_memory_bytes'] / flex['train_memory_bytes']
        out.append(('ESC x4 train step >= 1.5x official Flex at <= its peak memory',
                    f"{best['implementation']} {best['dtype']}: {speed:.2f}x, memory {mem:.2f}x",
                    'met' if speed >= 1.5 and mem <= 1 else 'not met'))
    else:
        out.append(('ESC x4 train step >= 1.5x official Flex at <= its peak memory', '-', 'not measured (no --official)'))
    infer = [r['infer_ms'] for r in rows if r.get('section') == 'esc' and r.get('dtype') == 'bf16'
             and r.get('implementation', '').startswith('ours') and 'infer_ms' in r]
    out.append(('ESC x4 inference to 1280x720 <= 15 ms in bf16', f'{min(infer):.1f} ms' if infer else '-',
                ('met' if min(infer) <= 15 else 'not met') if infer else 'not measured'))
    batch = max((r['batch'] for r in rows if r.get('section') == 'agileir'), default=None)
    a, s = get('agileir', model='AgileIR', batch=batch), get('agileir', model='SwinIR-light', batch=batch)
    if a and s:
        ratio = a['train_memory_bytes'] / s['train_memory_bytes']
        out.append((f'AgileIR peak training memory <= 1/4 of SwinIR-light (batch {batch})',
                    f'{ratio:.3f}x (1/{1 / ratio:.2f})', 'met' if ratio <= 0.25 else 'not met'))
    for host, own in (('Restormer', 'mdta'), ('MST++', 'smsa')):
        g, h = get('hosts', model=f'{host} + GLMHA'), get('hosts', model=f'{host} ({own})')
        if g and h:
            out.append((f'{host} + GLMHA train step faster than {host}', f"{h['train_seconds'] / g['train_seconds']:.2f}x",
                        'met' if g['train_seconds'] < h['train_seconds'] else 'not met'))
    if dry:
        out = [(t, m, 'dry run (CPU, tiny sizes): not a measurement') for t, m, _ in out]
    return out


def _cell(value):
    if isinstance(value, float):
        return f'{value:.4g}'
    return '' if value is None else str(value)


def markdown(rows, meta, section_seconds, dry):
    lines = ['# GPU suite' + (' (dry run on CPU: tiny sizes, figures are not measurements)' if dry else ''), '',
             '## Targets (issue 16)', '', '| target | measured | status |', '|---|---|---|']
    lines += [f'| {t} | {m} | {s} |' for t, m, s in targets(rows, dry)]
    lines += ['', '## Sections', '', '| section | seconds |', '|---|---:|']
    lines += [f'| {name} | {_cell(sec)} |' for name, sec in section_seconds.items()]
    for section in SECTIONS:
        part = [r for r in rows if r.get('section') == section]
        if not part:
            continue
        cols = [c for c in dict.fromkeys(k for r in part for k in r) if c != 'section']
        lines += ['', f'## {section}', '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
        lines += ['| ' + ' | '.join(_cell(r.get(c)) for c in cols) + ' |' for r in part]
    return '\n'.join(lines) + '\n'


def main(args):
    if args.dry_run:
        args.device = 'cpu'
    elif not torch.cuda.is_available():
        raise SystemExit('error: the GPU suite needs CUDA (torch.cuda.is_available() is False); '
                         'use --dry-run to exercise it on CPU')
    if args.name is None:
        dev = 'dryrun' if args.dry_run else re.sub(r'[^a-z0-9]+', '_', torch.cuda.get_device_name().lower()).strip('_')
        args.name = f'gpu_{dev}'
    start, rows, section_seconds = time.perf_counter(), [], {}
    for section in args.sections:
        if time.perf_counter() - start > args.budget_s:
            rows.append(dict(section=section, status=f'skipped: budget of {args.budget_s:.0f} s spent'))
            section_seconds[section] = None
            continue
        t0 = time.perf_counter()
        rows += globals()[f'section_{section}'](args)
        section_seconds[section] = time.perf_counter() - t0
        print(f'[gpu suite] {section}: {section_seconds[section]:.1f} s', flush=True)
    meta = dict(metadata(args.device), dry_run=args.dry_run, total_seconds=time.perf_counter() - start)
    paths = write_results(args.name, meta, rows, markdown(rows, meta, section_seconds, args.dry_run), args.out_dir)
    print('\n'.join(str(p) for p in paths))
    return 0
