"""Shared helpers for benchmark families: run metadata, result writing, and the comparison of a
run with the previous one (``compare_runs``: "nothing slowed down versus the previous run")."""
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from agile_ir_plugin.profiling import device_name

DOCS_DIR = Path(__file__).resolve().parents[2] / 'docs' / 'benchmarks'  # tracked: written only when asked
# results go to ./benchmark_results (outside the tracked docs) unless tools/benchmark.py --update-docs
# (or AGILE_IR_BENCHMARK_DIR) names another folder; read once, before any family is imported
OUT_DIR = Path(os.environ.get('AGILE_IR_BENCHMARK_DIR') or Path.cwd() / 'benchmark_results')

# measured fields: wall/CPU times (lower is better) and memory (lower is better); everything else
# that is a string or an integer names the configuration of a row (model, input, batch, window, ...)
TIME_FIELD = re.compile(r'(^|_)(seconds|s|ms)$|seconds_per_iter$|_ms$')
MEMORY_FIELD = re.compile(r'(bytes|mib)$')
MEASURED_INTS = {'params', 'params_saved', 'runs'}
SLOWER = 1.10  # a timing more than 10 % above the previous run's is flagged


# the paper configurations the whole-model families (compile, speedwork) build by name
ARCH_ARGS = {
    'ESC': dict(upscaling_factor=4),
    'AgileIR': dict(upscale=4, depths=[6, 6, 6, 6], embed_dim=60, num_heads=[6, 6, 6, 6], window_size=8,
                    mlp_ratio=2, drop_path_rate=0.0),
    'Restormer': dict(),
    'MSTPlusPlus': dict(),
}
SCALE = {'ESC': 4, 'AgileIR': 4, 'Restormer': 1, 'MSTPlusPlus': 1}


def build_model(arch, device='cpu', seed=0):
    """``ARCHS[arch](**ARCH_ARGS[arch])`` with every parameter perturbed (some archs zero-initialise
    their last layers, which would make outputs and differences trivial)."""
    from agile_ir_plugin.archs import ARCHS
    torch.manual_seed(seed)
    model = ARCHS[arch](**ARCH_ARGS[arch]).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def sync(device):
    """Wait for a CUDA device (a no-op on CPU) before reading a clock."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize(device)


def median_time(fn, repeats, device, warmup=1):
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sample(shape, device, seed=0):
    """A seeded uniform input, the same on every device."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


def train_step(model, x, target):
    """A closure running one training forward + L1 + backward (no optimizer step)."""
    def step():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), target).backward()
    return step


def train_memory(model, x, target, device):
    """Bytes kept for backward by one training forward (CPU) / peak allocated by a step (CUDA)."""
    from agile_ir_plugin.profiling import peak_cuda_memory, saved_activation_bytes
    if torch.device(device).type == 'cuda':
        return peak_cuda_memory(train_step(model, x, target), device=device)
    model.zero_grad(set_to_none=True)
    nbytes, out = saved_activation_bytes(model, x, model=model)
    del out
    return nbytes


def metadata(device='cpu'):
    return {
        'command': 'python tools/benchmark.py ' + ' '.join(sys.argv[1:]),
        'device': device_name(device),
        'torch': torch.__version__,
        'python': platform.python_version(),
        'date': datetime.date.today().isoformat(),
    }


def _is_measured(name, value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (
        TIME_FIELD.search(name) or MEMORY_FIELD.search(name))


def row_key(row):
    """The configuration of a row: its string, integer and list-of-integer fields that are not
    measurements (e.g. ``('model', 'AgileIR'), ('batch', 2)``)."""
    items = []
    for name, value in sorted(row.items()):
        if _is_measured(name, value) or name in MEASURED_INTS:
            continue
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            items.append((name, value))
        elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            items.append((name, tuple(value)))
    return tuple(items)


def _singular(value):
    """'2 cores, 1 threads' == '2 cores, 1 thread' (device names before and after a wording fix)."""
    return re.sub(r'\b(core|thread)s\b', r'\1', value) if isinstance(value, str) else value


def compare_runs(old, new, slower=SLOWER):
    """Compare two result documents (``{'meta': ..., 'rows': [...]}``) field by field.

    Rows are matched by ``row_key``; for every timing and memory field present in both, the ratio
    new / old is reported.  Returns ``{'comparable', 'reason', 'previous', 'fields', 'slower'}``
    where ``fields`` lists ``{key, field, kind, old, new, ratio}`` and ``slower`` the timing entries
    whose ratio exceeds ``slower`` (or memory entries that grew at all).  Runs on different devices
    or thread counts are not comparable (``reason`` says why); fields are still listed."""
    om, nm = old.get('meta', {}), new.get('meta', {})
    reasons = [f'{k}: {om.get(k)!r} then, {nm.get(k)!r} now' for k in ('device', 'threads')
               if _singular(om.get(k)) != _singular(nm.get(k))]
    old_rows = {}
    for row in old.get('rows', []):
        old_rows.setdefault(row_key(row), row)
    fields = []
    for row in new.get('rows', []):
        before = old_rows.get(row_key(row))
        if before is None:
            continue
        for name, value in row.items():
            prev = before.get(name)
            if not (_is_measured(name, value) and _is_measured(name, prev)) or not prev:
                continue
            kind = 'time' if TIME_FIELD.search(name) else 'memory'
            fields.append({'key': dict(row_key(row)), 'field': name, 'kind': kind, 'old': prev, 'new': value,
                           'ratio': value / prev})
    flagged = [f for f in fields if (f['kind'] == 'time' and f['ratio'] > slower)
               or (f['kind'] == 'memory' and f['ratio'] > 1.0 + 1e-9)]
    return {'comparable': not reasons, 'reason': '; '.join(reasons),
            'previous': {k: om.get(k) for k in ('date', 'command', 'device', 'torch')},
            'fields': fields, 'slower': flagged}


def _describe(key):
    """'A, batch 2': names (strings) first, then the numeric configuration with its field name."""
    names = [f'{v}' if k in ('model', 'variant', 'implementation', 'section', 'kind') else f'{k} {v}'
             for k, v in key.items() if isinstance(v, str)]
    return ', '.join(names + [f'{k} {v}' for k, v in key.items() if not isinstance(v, str)])


def comparison_markdown(result, slower=SLOWER):
    """The "Versus the previous run" section of a benchmark's Markdown."""
    prev = result['previous']
    lines = ['## Versus the previous run', '',
             f"Previous: {prev.get('date')}, `{prev.get('command')}`, {prev.get('device')}, torch {prev.get('torch')}.", '']
    if not result['fields']:
        return '\n'.join(lines + ['No row of this run matches a row of the previous one.', ''])
    if not result['comparable']:
        lines += [f"Not comparable ({result['reason']}); ratios listed for information only.", '']
    times = [f for f in result['fields'] if f['kind'] == 'time']
    mems = [f for f in result['fields'] if f['kind'] == 'memory']
    if times:
        ratios = sorted(f['ratio'] for f in times)
        lines.append(f'{len(times)} timings compared: new / old from {ratios[0]:.2f} to {ratios[-1]:.2f} '
                     f'(median {ratios[len(ratios) // 2]:.2f}).')
    if mems:
        lines.append(f'{len(mems)} memory figures compared: {sum(f["ratio"] > 1 + 1e-9 for f in mems)} grew.')
    flagged = result['slower']
    lines += ['', (f'**{len(flagged)} figure(s) slower by more than {slower - 1:.0%} or larger in memory:**'
                   if flagged else f'Nothing slower by more than {slower - 1:.0%}, no memory figure grew.'), '']
    shown = flagged or sorted(result['fields'], key=lambda f: -f['ratio'])[:8]
    if not flagged:
        lines += ['Largest ratios:', '']
    lines += ['| row | field | previous | now | now / previous |', '|---|---|---:|---:|---:|']
    lines += [f"| {_describe(f['key'])} | {f['field']} | {f['old']:.4g} | {f['new']:.4g} | {f['ratio']:.2f} |"
              for f in shown]
    return '\n'.join(lines) + '\n'


def write_results(name, meta, rows, markdown, out_dir=OUT_DIR):
    """Write ``<name>.json`` (meta + rows) and ``<name>.md`` (a header naming command/device/date
    followed by ``markdown`` and, when ``<name>.json`` already held a run, the comparison with
    it) into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f'{name}.json'
    md_path = out_dir / f'{name}.md'
    doc = {'meta': meta, 'rows': rows}
    if json_path.exists():
        try:
            previous = json.loads(json_path.read_text())
        except ValueError:
            previous = None
        if isinstance(previous, dict) and 'rows' in previous:
            comparison = compare_runs(previous, doc)
            markdown = markdown.rstrip() + '\n\n' + comparison_markdown(comparison)
            doc['vs_previous'] = {k: comparison[k] for k in ('comparable', 'reason', 'previous', 'slower')}
    json_path.write_text(json.dumps(doc, indent=2) + '\n')
    header = (f"Command: `{meta['command']}`  \nDevice: {meta['device']}  \n"
              f"torch {meta['torch']}, Python {meta['python']}, date {meta['date']}\n\n")
    md_path.write_text(header + markdown.rstrip() + '\n')
    return json_path, md_path
