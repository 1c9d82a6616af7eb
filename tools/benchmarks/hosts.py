"""Our Restormer / MST++ (original attention) vs the official code, same weights, same process.

    python tools/benchmark.py hosts --official-restormer /path/to/Restormer \\
        --official-mstpp /path/to/MST-plus-plus [--threads 2] [--quick]

The official code is imported at run time from the paths given (a checkout, or the file itself),
never copied into this repository:

- ``--official-restormer``: github.com/swz30/Restormer, ``basicsr/models/archs/restormer_arch.py``
  (class ``Restormer``; needs ``einops``);
- ``--official-mstpp``: github.com/caiyuanhao1998/MST-plus-plus,
  ``train_code/architecture/MST_Plus_Plus.py`` (class ``MST_Plus_Plus``; needs ``einops``; the
  copies under predict_code/ and test_*_code/ are identical).

For each host given: the official network is built with its defaults (Restormer 26.1M params,
MST++ 1.6M), its per-head temperatures and LayerNorm affine parameters are redrawn (seeded; at
their init values of 1 / 0 part of the computation would be an identity) and the same
``state_dict`` is loaded into ours (``attn='mdta'`` / ``attn='smsa'``) with ``strict=True``.
Then, in one process and on one device:

1. max |official - ours| of the inference outputs (fp32);
2. inference: 1 x 3 x S x S under ``torch.inference_mode`` (Restormer ``--size``, MST++
   ``--mst-size``, 256 each).  The issue's reference figures ("official: Restormer 256x256
   inference 28.6 s, MST++ 2.2 s", CPU) name 256x256 for Restormer only; for MST++ we take the same
   1 x 3 x 256 x 256 RGB input (31 bands out), at which the official code runs in about that time
   on the same 2-core machine;
3. a training step: forward + L1 loss + backward on a smaller input (``--train-size`` 64,
   ``--mst-train-size`` 128), plus the max |difference| of the input gradients;
4. bytes saved for backward by one training forward (CPU; ``saved_tensors_hooks``, parameters
   not counted) or peak memory of a training step (CUDA).

Timings: one warm-up each, then ``--repeats`` rounds running official and ours in turn (order
reversed every other round; both see the same machine state), medians.  Process CPU time (all
threads) is reported alongside the wall time: on a shared machine, where a process waits for a
core, it is the steadier of the two.  Ratios are official / ours throughout (> 1: ours faster, or
keeping less for backward).

Results: docs/benchmarks/hosts.json and hosts.md (``--out``, ``--out-dir``).
"""
import hashlib
import importlib.util
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from agile_ir_plugin.archs import MSTPlusPlus, Restormer
from agile_ir_plugin.profiling import count_params, device_name

from ._common import OUT_DIR, metadata, sample, sync, train_memory, train_step, write_results

MIB = 2 ** 20

#: host -> (option, official file inside a checkout (first found wins), class name, our constructor, repository)
HOSTS = {
    'Restormer': ('--official-restormer', ('basicsr/models/archs/restormer_arch.py',), 'Restormer',
                  lambda: Restormer(attn='mdta'), 'github.com/swz30/Restormer'),
    'MST++': ('--official-mstpp', ('train_code/architecture/MST_Plus_Plus.py',
                                   'predict_code/architecture/MST_Plus_Plus.py',
                                   'test_develop_code/architecture/MST_Plus_Plus.py'), 'MST_Plus_Plus',
              lambda: MSTPlusPlus(attn='smsa'), 'github.com/caiyuanhao1998/MST-plus-plus'),
}


def add_arguments(parser):
    parser.add_argument('--official-restormer', default=None, metavar='PATH',
                        help='checkout of github.com/swz30/Restormer, or its restormer_arch.py')
    parser.add_argument('--official-mstpp', default=None, metavar='PATH',
                        help='checkout of github.com/caiyuanhao1998/MST-plus-plus, or its MST_Plus_Plus.py')
    parser.add_argument('--size', type=int, default=None, help='Restormer inference input S (1x3xSxS; default 256)')
    parser.add_argument('--mst-size', type=int, default=None, help='MST++ inference input S (1x3xSxS; default 256)')
    parser.add_argument('--train-size', type=int, default=None, help='Restormer training-step input (default 64)')
    parser.add_argument('--mst-train-size', type=int, default=None, help='MST++ training-step input (default 128)')
    parser.add_argument('--repeats', type=int, default=None, help='interleaved timed rounds (median; default 5)')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch default)')
    parser.add_argument('--device', default='cpu', help="'cpu' (the issue's reference) or e.g. 'cuda'")
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes (64 inference, 32 training) and 1 repeat, for checking the script')
    parser.add_argument('--out', default='hosts', help='result file name (without extension) in --out-dir')
    parser.add_argument('--out-dir', default=str(OUT_DIR))


# ------------------------------------------------------------------------------------------------
# the official code
# ------------------------------------------------------------------------------------------------
def load_official(host, path):
    """The official network class of ``host``, imported from ``path`` (a checkout or the file)."""
    option, files, cls_name, _, repo = HOSTS[host]
    path = Path(path).expanduser()
    if path.is_dir():
        path = next((path / f for f in files if (path / f).is_file()), path / files[0])
    if not path.is_file():
        raise SystemExit(f'{option}: no official {host} file at {path}; pass a checkout of {repo} '
                         f'(or its {Path(files[0]).name}).')
    name = 'official_' + ''.join(c if c.isalnum() else '_' for c in host.lower())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as err:
        missing = getattr(err, 'name', None)
        hint = f'pip install {missing}' if missing else 'install what it imports'
        raise SystemExit(f'{option}: importing {path} failed ({err}); {hint}.') from None
    if not hasattr(module, cls_name):
        raise SystemExit(f'{option}: {path} has no class {cls_name}; pass a checkout of {repo}.')
    return getattr(module, cls_name), path


def _checkout_commit(path):
    """HEAD commit of the git checkout holding ``path`` (read from .git, no git call), else None."""
    for parent in Path(path).resolve().parents:
        git = parent / '.git'
        if not (git / 'HEAD').is_file():
            continue
        head = (git / 'HEAD').read_text().strip()
        if not head.startswith('ref: '):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        packed = git / 'packed-refs'
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(' ' + ref):
                    return line.split()[0]
        return None
    return None


def describe_source(host, path):
    """{repo, file, sha256, commit} of the official file used."""
    return dict(repo=HOSTS[host][4], file=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                commit=_checkout_commit(path))


def _redraw(model, seed=0):
    """Seeded non-trivial temperatures / rescales and LayerNorm affine parameters (in place)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(('temperature', 'rescale')):
                p.copy_(torch.rand(p.shape, generator=g) * 2 + 0.5)
            elif 'norm' in name:
                base = 1.0 if name.endswith('weight') else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    return model


def build_pair(host, official_cls, device):
    torch.manual_seed(0)
    official = _redraw(official_cls()).to(device)
    ours = HOSTS[host][3]().to(device)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


# ------------------------------------------------------------------------------------------------
# measurements
# ------------------------------------------------------------------------------------------------
def _infer(model, x):
    def run():
        with torch.inference_mode():
            return model(x)
    return run


def _interleaved(fns, repeats, device):
    """{name: (median wall s, median process CPU s, all wall s)}: one warm-up each, then rounds
    that run every function once, in turn (the order reversed every other round)."""
    for fn in fns.values():
        fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in (list(fns.items()) if i % 2 == 0 else list(fns.items())[::-1]):
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), wall[name]) for name in fns}


def _input_grad(model, x, target):
    x = x.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    F.l1_loss(model(x), target).backward()
    model.zero_grad(set_to_none=True)
    return x.grad


def compare(host, official_cls, device, infer_size, train_size, repeats):
    official, ours = build_pair(host, official_cls, device)
    nets = {'official': official, 'ours': ours}
    out_ch = 3 if host == 'Restormer' else 31
    x_infer = sample((1, 3, infer_size, infer_size), device, seed=2)
    x_train = sample((1, 3, train_size, train_size), device, seed=0)
    target = sample((1, out_ch, train_size, train_size), device, seed=1)

    # the same function: outputs and input gradients agree
    for net in nets.values():
        net.eval()
    with torch.inference_mode():
        y_off, y_ours = official(x_infer), ours(x_infer)
    diff = (y_off - y_ours).abs().max().item()
    out_scale = y_off.abs().max().item()
    del y_off, y_ours
    for net in nets.values():
        net.train()
    g_off, g_ours = _input_grad(official, x_train, target), _input_grad(ours, x_train, target)
    grad_diff = (g_off - g_ours).abs().max().item()
    grad_scale = g_off.abs().max().item()

    result = {name: {} for name in nets}
    for name, net in nets.items():
        result[name]['train_memory_bytes'] = train_memory(net, x_train, target, device)
    timed = _interleaved({name: train_step(net, x_train, target) for name, net in nets.items()}, repeats, device)
    for name, (wall, cpu, all_wall) in timed.items():
        result[name].update(train_seconds=wall, train_cpu_seconds=cpu, train_all_seconds=all_wall)
    for net in nets.values():
        net.zero_grad(set_to_none=True)
        net.eval()
    timed = _interleaved({name: _infer(net, x_infer) for name, net in nets.items()}, repeats, device)
    for name, (wall, cpu, all_wall) in timed.items():
        result[name].update(infer_seconds=wall, infer_cpu_seconds=cpu, infer_all_seconds=all_wall)

    rows = [dict(section='host', host=host, implementation=name, params=count_params(nets[name]),
                 infer_input=list(x_infer.shape), train_input=list(x_train.shape), **values)
            for name, values in result.items()]
    o, u = result['official'], result['ours']
    rows.append(dict(section='ratio', host=host, infer_speedup=o['infer_seconds'] / u['infer_seconds'],
                     train_speedup=o['train_seconds'] / u['train_seconds'],
                     infer_cpu_speedup=o['infer_cpu_seconds'] / u['infer_cpu_seconds'],
                     train_cpu_speedup=o['train_cpu_seconds'] / u['train_cpu_seconds'],
                     memory_saving=o['train_memory_bytes'] / u['train_memory_bytes'],
                     max_abs_output_diff=diff, max_abs_output=out_scale,
                     max_abs_input_grad_diff=grad_diff, max_abs_input_grad=grad_scale,
                     infer_input=list(x_infer.shape), train_input=list(x_train.shape), repeats=repeats))
    return rows


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def markdown(rows, device, sources):
    mem_word = 'peak memory of a step' if torch.device(device).type == 'cuda' else 'bytes kept for backward'
    lines = ['# Restormer / MST++ (original attention): ours vs the official code', '',
             'Same weights (official init, seed 0, temperatures and LayerNorm affine parameters redrawn; '
             'loaded into ours with `strict=True`), same process. Timings: one warm-up, then interleaved '
             'rounds official / ours (order reversed every other round), medians; CPU time = process CPU '
             'time, all threads. Ratios are official / ours (> 1: ours faster or keeping less).', '']
    for host, source in sources.items():
        ratio = next((r for r in rows if r['section'] == 'ratio' and r['host'] == host), None)
        if ratio is None:
            continue
        n = ratio['infer_input'][-1]
        t = ratio['train_input'][-1]
        commit = f" at commit {source['commit']}" if source['commit'] else ''
        lines += [f'## {host}', '', f"Official code: {source['repo']}{commit}, `{Path(source['file']).name}` "
                                    f"(sha256 {source['sha256'][:16]}...).", '',
                  f"Inference on {ratio['infer_input']} (`torch.inference_mode`), training step (forward + L1 + "
                  f"backward) on {ratio['train_input']}, {ratio['repeats']} round(s). Max |output difference| "
                  f"{ratio['max_abs_output_diff']:.2e} (outputs up to {ratio['max_abs_output']:.3g}); max |input "
                  f"gradient difference| {ratio['max_abs_input_grad_diff']:.2e} (gradients up to "
                  f"{ratio['max_abs_input_grad']:.3g}).", '',
                  f'| implementation | inference {n}x{n} (s) | inference CPU time (s) | train step {t}x{t} (s) | '
                  f'train step CPU time (s) | {mem_word} (MiB) |', '|---|---|---|---|---|---|']
        for r in rows:
            if r['section'] == 'host' and r['host'] == host:
                lines.append(f"| {r['implementation']} | {r['infer_seconds']:.3f} | {r['infer_cpu_seconds']:.3f} | "
                             f"{r['train_seconds']:.3f} | {r['train_cpu_seconds']:.3f} | "
                             f"{r['train_memory_bytes'] / MIB:.1f} |")
        lines += ['', f"Official / ours: inference {ratio['infer_speedup']:.2f}x (CPU time "
                      f"{ratio['infer_cpu_speedup']:.2f}x), training step {ratio['train_speedup']:.2f}x (CPU time "
                      f"{ratio['train_cpu_speedup']:.2f}x), {mem_word} {ratio['memory_saving']:.2f}x "
                      '(target: inference >= 1.0x with identical outputs).', '']
    return '\n'.join(lines)


def main(args):
    given = {host: getattr(args, HOSTS[host][0][2:].replace('-', '_')) for host in HOSTS}
    given = {host: path for host, path in given.items() if path}
    if not given:
        raise SystemExit('hosts: pass --official-restormer PATH and/or --official-mstpp PATH '
                         '(checkouts of github.com/swz30/Restormer, github.com/caiyuanhao1998/MST-plus-plus).')
    loaded = {host: load_official(host, path) for host, path in given.items()}  # fail early, before timing
    classes = {host: cls for host, (cls, _) in loaded.items()}
    sources = {host: describe_source(host, file) for host, (_, file) in loaded.items()}
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    sizes = {'Restormer': (args.size or (64 if quick else 256), args.train_size or (32 if quick else 64)),
             'MST++': (args.mst_size or (64 if quick else 256), args.mst_train_size or (32 if quick else 128))}
    repeats = args.repeats or (1 if quick else 5)
    device = args.device
    print(f'device: {device_name(device)}; hosts: {list(given)}; repeats: {repeats}', flush=True)
    rows = []
    for host, cls in classes.items():
        infer_size, train_size = sizes[host]
        start = time.perf_counter()
        rows += compare(host, cls, device, infer_size, train_size, repeats)
        r = rows[-1]
        print(f"{host}: inference {r['infer_speedup']:.2f}x (CPU time {r['infer_cpu_speedup']:.2f}x), train step "
              f"{r['train_speedup']:.2f}x (CPU time {r['train_cpu_speedup']:.2f}x), saved "
              f"activations {r['memory_saving']:.2f}x (official / ours); max |diff| output "
              f"{r['max_abs_output_diff']:.2e}, input grad {r['max_abs_input_grad_diff']:.2e} "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
    meta = metadata(device)
    meta['threads'] = torch.get_num_threads()
    meta['official'] = sources
    json_path, md_path = write_results(args.out, meta, rows, markdown(rows, device, sources), out_dir=args.out_dir)
    print(md_path.read_text())
    return 0
