"""GLMHA in Restormer and MST++: params / GMACs at 256x256, CPU latency, training memory and
step time, and a proxy deraining run (host vs GLMHA, same seed, data and iterations).

``python tools/benchmark.py glmha [--size 64] [--proxy-iters 300] ...`` writes
``docs/benchmarks/glmha.{json,md,png}``.

- Params and MACs are counted at 256x256 on the meta device (shapes only, exact counts from
  ``torch.utils.flop_counter``; FLOPs = 2 x MACs).
- Latency (inference forward) and the training step (forward + L1 + backward + AdamW step) are
  medians over ``--rounds`` interleaved rounds (host, variant, host, ...) after a warm-up, at a
  smaller ``--size`` on CPU, single-threaded by default (``--threads``).  Both the wall time and
  the CPU time of the process are recorded; speed-ups use the CPU time, which stays meaningful
  when other jobs share the cores (wall time then mostly measures the neighbours).  Training
  memory is the bytes autograd saves for backward in one forward
  (``profiling.saved_activation_bytes``).  Ratios are host / variant in one process.
- "GLMHA r=c" is GLMHA at full rank: it isolates what the execution order (norms divided out of
  the logits, output projection folded into the attention map) and the calibration network do,
  from the low-rank savings.
- Proxy: a reduced-width Restormer (``--proxy-dim``, fewer blocks) learns to remove synthetic
  rain streaks added to random crops of ../shared/data/train (T91 + BSD200); PSNR (RGB, [0, 1])
  on 128x128 centre crops of B100 with fixed synthetic rain.  For each of ``--proxy-seeds``,
  host and GLMHA start from that seed and see the same batches in the same order; several seeds
  show how large the seed-to-seed spread is next to the host-vs-GLMHA difference.
"""
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agile_ir_plugin.archs import MSTPlusPlus, Restormer
from agile_ir_plugin.profiling import count_macs, count_params, saved_activation_bytes

from ._common import OUT_DIR, metadata, write_results

SHARED = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'

VARIANTS = {
    'Restormer': [('Restormer (MDTA)', Restormer, {}),
                  ('Restormer + GLMHA r=c/2 (default)', Restormer, dict(attn='glmha')),
                  ('Restormer + GLMHA r=c/4', Restormer, dict(attn='glmha', glmha_reduction=4)),
                  ('Restormer + GLMHA r=c', Restormer, dict(attn='glmha', glmha_reduction=1))],
    'MST++': [('MST++ (S-MSA)', MSTPlusPlus, {}),
              ('MST++ + GLMHA r=c/2 (default)', MSTPlusPlus, dict(attn='glmha')),
              ('MST++ + GLMHA r=c/4', MSTPlusPlus, dict(attn='glmha', glmha_reduction=4)),
              ('MST++ + GLMHA r=c', MSTPlusPlus, dict(attn='glmha', glmha_reduction=1))],
}
PROXY_NET = dict(num_blocks=[1, 2, 2, 2], num_refinement_blocks=1, heads=[1, 2, 4, 8])


def add_arguments(parser):
    parser.add_argument('--size', type=int, default=64, help='CPU latency / memory input side for Restormer')
    parser.add_argument('--mst-size', type=int, default=128, help='CPU latency / memory input side for MST++')
    parser.add_argument('--rounds', type=int, default=5, help='interleaved timing rounds (median)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (0 = torch default)')
    parser.add_argument('--proxy-iters', type=int, default=300)
    parser.add_argument('--proxy-batch', type=int, default=4)
    parser.add_argument('--proxy-crop', type=int, default=64)
    parser.add_argument('--proxy-dim', type=int, default=16, help='Restormer width of the proxy run (official: 48)')
    parser.add_argument('--proxy-eval', type=int, default=10, help='B100 images for the proxy PSNR')
    parser.add_argument('--seed', type=int, default=0, help='seed of the timing inputs and of the eval rain')
    parser.add_argument('--proxy-seeds', type=int, nargs='+', default=[0, 1],
                        help='one proxy run per seed (model init + training batches), host and GLMHA alike')
    parser.add_argument('--skip-proxy', action='store_true')
    parser.add_argument('--data', default=str(SHARED))
    parser.add_argument('--name', default='glmha')


# ---------------------------------------------------------------------------------------------
# Cost and speed
def cost_rows():
    rows = []
    for family, variants in VARIANTS.items():
        host = None
        for label, cls, kwargs in variants:
            with torch.device('meta'):
                model = cls(**kwargs)
                macs = count_macs(model, torch.empty(1, 3, 256, 256))
            params = count_params(model)
            host = host or (macs, params)
            rows.append(dict(section='cost', family=family, variant=label, params=params, gmacs_256=macs / 1e9,
                             params_saved=host[1] - params, gmacs_saved=(host[0] - macs) / 1e9))
    return rows


def speed_rows(size, mst_size, rounds, seed):
    rows = []
    for family, variants in VARIANTS.items():
        side = size if family == 'Restormer' else mst_size
        torch.manual_seed(seed)
        x = torch.rand(1, 3, side, side)
        models = [(label, cls(**kwargs)) for label, cls, kwargs in variants]
        target = models[0][1](x).detach() * 0.9
        optims = [torch.optim.AdamW(m.parameters(), lr=1e-6) for _, m in models]

        def step(model, optim):
            optim.zero_grad(set_to_none=True)
            F.l1_loss(model(x), target).backward()
            optim.step()

        def infer(model):
            with torch.no_grad():
                model(x)

        saved = {}
        for (label, model), optim in zip(models, optims):
            saved[label] = saved_activation_bytes(lambda: model(x), model=model)[0]
            step(model, optim)  # warm-up (also allocates the optimiser state)
            infer(model)
        times = {(label, kind, clock): [] for label, _ in models
                 for kind in ('fwd', 'train') for clock in ('cpu', 'wall')}
        for _ in range(rounds):
            for (label, model), optim in zip(models, optims):
                for kind, fn in (('fwd', lambda: infer(model)), ('train', lambda: step(model, optim))):
                    c0, w0 = time.process_time(), time.perf_counter()
                    fn()
                    times[label, kind, 'cpu'].append(time.process_time() - c0)
                    times[label, kind, 'wall'].append(time.perf_counter() - w0)
        med = {key: float(np.median(v)) for key, v in times.items()}
        host = models[0][0]
        for label, _ in models:
            rows.append(dict(section='speed', family=family, variant=label, input=f'1x3x{side}x{side}',
                             forward_cpu_ms=med[label, 'fwd', 'cpu'] * 1e3,
                             forward_wall_ms=med[label, 'fwd', 'wall'] * 1e3,
                             train_step_cpu_ms=med[label, 'train', 'cpu'] * 1e3,
                             train_step_wall_ms=med[label, 'train', 'wall'] * 1e3,
                             saved_mib=saved[label] / 2 ** 20,
                             forward_speedup=med[host, 'fwd', 'cpu'] / med[label, 'fwd', 'cpu'],
                             train_step_speedup=med[host, 'train', 'cpu'] / med[label, 'train', 'cpu'],
                             memory_ratio=saved[label] / saved[host]))
    return rows


# ---------------------------------------------------------------------------------------------
# Proxy deraining run
def add_rain(img, rng):
    """Synthetic rain: sparse drops smeared by a slanted line kernel, added to the image."""
    import cv2
    h, w = img.shape[:2]
    drops = (rng.random((h, w)) < rng.uniform(0.004, 0.012)) * rng.uniform(0.5, 1.0, (h, w))
    length = int(rng.integers(7, 17)) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[:, length // 2] = 1
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(-25, 25), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    streaks = cv2.filter2D(drops.astype(np.float32), -1, kernel / kernel.sum()) * length * rng.uniform(0.3, 0.7)
    return np.clip(img + np.clip(streaks, 0, 1)[..., None], 0, 1).astype(np.float32)


def load_images(paths):
    import cv2
    return [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255 for p in paths]


def proxy_batch(images, it, batch, crop, seed):
    rng = np.random.default_rng([seed, it])
    lq, gt = [], []
    for _ in range(batch):
        img = images[rng.integers(len(images))]
        y, x = rng.integers(img.shape[0] - crop + 1), rng.integers(img.shape[1] - crop + 1)
        patch = img[y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        gt.append(np.ascontiguousarray(patch))
        lq.append(add_rain(gt[-1], rng))
    to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_t(lq), to_t(gt)


def psnr(a, b):
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def run_proxy(args, kwargs, train_images, eval_set, seed):
    torch.manual_seed(seed)
    model = Restormer(dim=args.proxy_dim, **PROXY_NET, **kwargs)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, args.proxy_iters, eta_min=1e-6)
    curve, losses, t0, c0 = [], [], time.perf_counter(), time.process_time()
    for it in range(1, args.proxy_iters + 1):
        lq, gt = proxy_batch(train_images, it, args.proxy_batch, args.proxy_crop, seed)
        loss = F.l1_loss(model(lq), gt)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)  # Restormer recipe
        optim.step()
        sched.step()
        losses.append(loss.item())
        if it % max(1, args.proxy_iters // 6) == 0 or it == args.proxy_iters:
            curve.append((it, evaluate(model, eval_set)))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0  # both include the evaluations
    return dict(params=count_params(model), psnr=curve[-1][1], curve=curve, losses=losses,
                seconds=seconds, cpu_seconds=cpu, seconds_per_iter=seconds / args.proxy_iters,
                cpu_seconds_per_iter=cpu / args.proxy_iters)


@torch.no_grad()
def evaluate(model, eval_set):
    model.eval()
    scores = [psnr(model(lq[None]), gt[None]) for lq, gt in eval_set]
    model.train()
    return float(np.mean(scores))


def proxy_rows(args):
    data = Path(args.data)
    train_paths = sorted((data / 'train' / 'T91').glob('*.png')) + sorted((data / 'train' / 'BSD200').glob('*.png'))
    eval_paths = sorted((data / 'benchmark' / 'B100' / 'HR').glob('*.png'))[:args.proxy_eval]
    if not train_paths or not eval_paths:
        raise SystemExit(f'proxy run needs {data}/train/{{T91,BSD200}} and {data}/benchmark/B100/HR '
                         f'(or pass --skip-proxy / --data)')
    train_images = [im for im in load_images(train_paths) if min(im.shape[:2]) >= args.proxy_crop]
    rng = np.random.default_rng([args.seed, 10 ** 6])
    eval_set = []
    for img in load_images(eval_paths):
        y, x = (img.shape[0] - 128) // 2, (img.shape[1] - 128) // 2
        gt = np.ascontiguousarray(img[y:y + 128, x:x + 128])
        eval_set.append(tuple(torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in (add_rain(gt, rng), gt)))
    rainy = float(np.mean([psnr(lq, gt) for lq, gt in eval_set]))
    results, rows = {}, []
    for seed in args.proxy_seeds:
        for label, kwargs in [('Restormer (MDTA)', {}), ('Restormer + GLMHA r=c/2 (default)', dict(attn='glmha'))]:
            results[label, seed] = run_proxy(args, kwargs, train_images, eval_set, seed)
            print(f"proxy {label} seed {seed}: PSNR {results[label, seed]['psnr']:.3f} dB, "
                  f"{results[label, seed]['seconds']:.0f} s", flush=True)
    for (label, seed), r in results.items():
        host = results['Restormer (MDTA)', seed]
        rows.append(dict(section='proxy', variant=label, seed=seed, params=r['params'], rainy_psnr=rainy,
                         psnr=r['psnr'],
                         delta_db=r['psnr'] - host['psnr'], seconds_per_iter=r['seconds_per_iter'],
                         cpu_seconds_per_iter=r['cpu_seconds_per_iter'],
                         iter_speedup=host['cpu_seconds_per_iter'] / r['cpu_seconds_per_iter'], curve=r['curve'],
                         final_loss_mean_last_20=float(np.mean(r['losses'][-20:]))))
    return rows, results


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (label, seed), r in results.items():
        losses = np.convolve(r['losses'], np.ones(10) / 10, mode='valid')
        style = '-' if 'MDTA' in label else '--'
        ax1.plot(np.arange(len(losses)) + 10, losses, style, label=f'{label}, seed {seed}')
        ax2.plot(*zip(*r['curve']), style, marker='o', label=f'{label}, seed {seed}')
    ax1.set(xlabel='iteration', ylabel='L1 (moving average of 10)', title='proxy training loss')
    ax2.set(xlabel='iteration', ylabel='PSNR (dB)', title='held-out PSNR (B100 crops, synthetic rain)')
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
def markdown(rows, args):
    out = ['## Cost at 256x256 (meta-device count, MACs; FLOPs = 2 x MACs)', '',
           '| variant | params | saved params | GMACs | saved GMACs |', '|---|---:|---:|---:|---:|']
    for r in rows:
        if r['section'] == 'cost':
            out.append(f"| {r['variant']} | {r['params']:,} | {r['params_saved']:,} | {r['gmacs_256']:.2f} | "
                       f"{r['gmacs_saved']:.2f} |")
    out += ['', f'## CPU speed and training memory (median of {args.rounds} interleaved rounds, batch 1, '
                f'{torch.get_num_threads()} thread(s); speed-ups from CPU time)', '',
            '| variant | input | forward CPU ms (wall) | train step CPU ms (wall) | saved activations MiB | '
            'forward speed-up | train-step speed-up | memory ratio |', '|---|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        if r['section'] == 'speed':
            out.append(f"| {r['variant']} | {r['input']} | {r['forward_cpu_ms']:.0f} ({r['forward_wall_ms']:.0f}) | "
                       f"{r['train_step_cpu_ms']:.0f} ({r['train_step_wall_ms']:.0f}) | "
                       f"{r['saved_mib']:.0f} | {r['forward_speedup']:.2f}x | {r['train_step_speedup']:.2f}x | "
                       f"{r['memory_ratio']:.2f} |")
    proxy = [r for r in rows if r['section'] == 'proxy']
    if proxy:
        out += ['', f"## Proxy deraining run (Restormer dim {args.proxy_dim}, blocks {PROXY_NET['num_blocks']}, "
                    f"refinement {PROXY_NET['num_refinement_blocks']}; {args.proxy_iters} iterations, batch "
                    f"{args.proxy_batch}, {args.proxy_crop}px crops, seeds {args.proxy_seeds})", '',
                f"Rainy input PSNR on the held-out crops: {proxy[0]['rainy_psnr']:.2f} dB.", '',
                '| variant | seed | params | PSNR dB | delta dB | CPU s / iter (wall) | iteration speed-up (CPU) | '
                'PSNR along training |',
                '|---|---:|---:|---:|---:|---:|---:|---|']
        for r in proxy:
            curve = ', '.join(f'{it}: {p:.2f}' for it, p in r['curve'])
            out.append(f"| {r['variant']} | {r['seed']} | {r['params']:,} | {r['psnr']:.3f} | {r['delta_db']:+.3f} | "
                       f"{r['cpu_seconds_per_iter']:.3f} ({r['seconds_per_iter']:.3f}) | {r['iter_speedup']:.2f}x | "
                       f"{curve} |")
        deltas = [r['delta_db'] for r in proxy if 'GLMHA' in r['variant']]
        host_psnr = [r['psnr'] for r in proxy if 'GLMHA' not in r['variant']]
        out += ['', f"Mean GLMHA - host over {len(deltas)} seed(s): {np.mean(deltas):+.3f} dB "
                    f"(per seed {', '.join(f'{d:+.3f}' for d in deltas)}); host PSNR spread across seeds "
                    f"{max(host_psnr) - min(host_psnr):.3f} dB."]
    out += ['', '## Targets of the issue (default ranks, computed from the rows above)', '']
    out += targets(rows)
    return '\n'.join(out) + '\n'


def targets(rows):
    lines = []
    for family in VARIANTS:
        c = [r for r in rows if r['section'] == 'cost' and r['family'] == family][1]
        note = ''
        if family == 'MST++':
            note = (' - MST++ has 1.62M parameters and 22.2 GMACs in all and its 15 S-MSAs together hold about '
                    '0.30M parameters and 5.4 GMACs at 256x256, so even deleting every attention could not save '
                    '7.7 GMACs or 370K parameters: the target is out of reach for MST++ at any rank')
        ok = c['gmacs_saved'] >= 7.7 and c['params_saved'] >= 370_000
        lines.append(f"- {family}: {c['gmacs_saved']:.2f} GMACs and {c['params_saved']:,} parameters saved "
                     f"(target >= 7.7 GMACs and >= 370K): {'met' if ok else 'NOT met'}{note}.")
        speed = [r for r in rows if r['section'] == 'speed' and r['family'] == family]
        if speed:
            r = speed[1]
            lines.append(f"- {family}: training step {r['train_step_speedup']:.2f}x faster on CPU ({r['input']}), "
                         f"saved activations x{r['memory_ratio']:.2f} (target >= 1.2x faster): "
                         f"{'met' if r['train_step_speedup'] >= 1.2 else 'NOT met'}.")
    proxy = [r for r in rows if r['section'] == 'proxy' and 'GLMHA' in r['variant']]
    if proxy:
        mean = float(np.mean([r['delta_db'] for r in proxy]))
        lines.append(f"- Proxy (reduced-width Restormer): GLMHA - host = {mean:+.3f} dB on average over "
                     f"{len(proxy)} seed(s) (target within 0.1 dB): {'met' if abs(mean) <= 0.1 else 'NOT met'}.")
    return lines


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)  # before metadata(), which records the thread count
    meta = metadata('cpu')
    rows = cost_rows()
    print('cost done', flush=True)
    rows += speed_rows(args.size, args.mst_size, args.rounds, args.seed)
    print('speed done', flush=True)
    results = None
    if not args.skip_proxy:
        proxy, results = proxy_rows(args)
        rows += proxy
    text = markdown(rows, args)
    paths = write_results(args.name, meta, rows, text)
    if results:
        plot(results, OUT_DIR / f'{args.name}.png')
    print(text)
    print('wrote', *paths)
    return 0
