"""Quality proxies with seeds: pairs trained identically from scratch on T91 + BSD200, scored on Set5 / Set14 / B100.

``python tools/benchmark.py quality [--pairs sr restormer] [--seeds 0 1 2] [--jobs 2] [--iters N]``

Each pair's members get the same reduced configuration, the same seeds, the same batches (same
crops, flips and noise for a given seed), the same optimiser and schedule; only the attention
differs.  Pairs:

* ``sr``: SwinIR-light (BasicSR's own ``SwinIR``) vs AgileIR, SR x2, MATLAB-bicubic LR (made with
  ``evaluation.MatlabBicubic`` from the HR crops' images, rounded to 8 bit like the test sets'
  LR).  Baseline: bicubic upscaling of the test sets' LR.
* ``restormer``: Restormer (MDTA) vs Restormer+GLMHA at ``glmha_preset='paper'`` and at the
  default (rank c/2 everywhere).  Restoration proxy on the same images: Gaussian blur (sigma
  1.6, 13x13, reflect border) plus Gaussian noise (sigma 2/255), rounded to 8 bit, scored on the
  central 160 x 160 crop of every test image.  Baseline: the degraded input itself (its PSNR
  against the clean image).

Scores: ``agile_ir_plugin.evaluate`` (Y channel, MATLAB ``rgb2ycbcr``, crop border = scale, 0 at
scale 1), so the numbers follow the leaderboard's conventions.  Every finished run is written at
once to ``quality_runs.json`` (next to the results); a re-run skips runs whose configuration is
already there, so an interrupted sweep resumes where it stopped.  ``--report-only`` rebuilds
``quality.{json,md,png}`` from whatever has finished.  Runs execute in fresh processes (``--jobs``
at a time), each with one thread.  This is a small-scale proxy, not the papers' DIV2K results.
"""
import json
import math
import multiprocessing
import os
import statistics
import time
from pathlib import Path

import torch

from ._common import OUT_DIR, metadata, write_results
from ._quality_data import (  # noqa: F401  (BLUR_SIZE, blur: this module's interface)
    BLUR_SIGMA, BLUR_SIZE, EVAL_CROP, NOISE_SIGMA, PAIRS, SETS, SHARED, SR_COMMON, _eval_sets, _images, batches, blur,
    degraded_sets, load_training)

DEFAULTS = {'sr': dict(iters=700, batch=8, patch=24, lr=1e-3),       # patch: LR (x2: 48 HR)
            'restormer': dict(iters=500, batch=4, patch=48, lr=1e-3)}


def add_arguments(parser):
    parser.add_argument('--pairs', nargs='+', default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time (each one thread, its own process)')
    parser.add_argument('--iters', type=int, help='training iterations (default per pair: sr 700, restormer 500)')
    parser.add_argument('--batch', type=int)
    parser.add_argument('--patch', type=int, help='input patch (LR for SR)')
    parser.add_argument('--lr', type=float)
    parser.add_argument('--train-dirs', nargs='+', default=[str(SHARED / 'train' / 'T91'), str(SHARED / 'train' / 'BSD200')])
    parser.add_argument('--eval-root', default=str(SHARED / 'benchmark'), help='holds Set5/, Set14/, B100/')
    parser.add_argument('--sets', nargs='+', default=SETS)
    parser.add_argument('--eval-crop', type=int, default=EVAL_CROP, help='restormer: central crop of the test images')
    parser.add_argument('--cache-dir', default='/tmp/agile_ir_quality_cache', help='degraded test images (restormer)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--report-only', action='store_true', help='rebuild the report from finished runs')
    parser.add_argument('--out-dir', default=str(OUT_DIR))


def _config(args, pair):
    cfg = dict(DEFAULTS[pair])
    for key in cfg:
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    cfg = dict(cfg, scale=PAIRS[pair]['scale'], sets=list(args.sets))
    return dict(cfg, eval_crop=args.eval_crop) if cfg['scale'] == 1 else cfg


def build(pair, model):
    """A fresh model of ``pair``'s member ``model`` (call after seeding)."""
    kind, kwargs = PAIRS[pair]['models'][model]
    scale = PAIRS[pair]['scale']
    if kind == 'swinir':
        import agile_ir_plugin  # noqa: F401  (compat fixes before basicsr)
        from basicsr.archs.swinir_arch import SwinIR
        return SwinIR(upscale=scale, **kwargs)
    from agile_ir_plugin.archs import ARCHS
    return ARCHS[kind](**(dict(kwargs, upscale=scale) if kind == 'AgileIR' else kwargs))


def _scores(model, pair, args, device):
    from agile_ir_plugin.evaluation import evaluate
    # BasicSR's SwinIR keeps no window_size attribute: pad to the window as its test pipeline does
    pad = SR_COMMON['window_size'] if pair == 'sr' and isinstance(model, torch.nn.Module) else None
    rows = evaluate(model, datasets=_eval_sets(pair, args), scale=PAIRS[pair]['scale'], device=device,
                    progress=False, metrics=('psnr', 'ssim'), pad_multiple=pad)
    return {r['dataset']: {'psnr': r['psnr'], 'ssim': r['ssim']} for r in rows}


# -- one run (in its own process) ------------------------------------------------------------------
def run_job(job):
    """Train ``job['model']`` of ``job['pair']`` for the seed; returns its result dict."""
    torch.set_num_threads(1)
    pair, cfg, seed, device = job['pair'], job['config'], job['seed'], job['device']
    data = load_training(pair, job['train_dirs'])
    torch.manual_seed(seed)
    model = build(pair, job['model']).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg['lr'], betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(  # cosine from lr to lr / 100
        opt, lambda i: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(i, cfg['iters']) / cfg['iters'])))
    stream = batches(data, pair, cfg, seed)
    losses, start = [], time.perf_counter()
    for _ in range(cfg['iters']):
        x, y = next(stream)
        loss = torch.nn.functional.l1_loss(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 100 == 0:
            print(f"  {job['model']} seed {seed}: iteration {len(losses)}/{cfg['iters']}, L1 {sum(losses[-100:]) / 100:.4f}, "
                  f'{time.perf_counter() - start:.0f} s', flush=True)
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f'{job["model"]} seed {seed}: loss became {losses[-1]} at iteration {len(losses)}')
    train_s = time.perf_counter() - start
    scores = _scores(model, pair, job, device)
    tail = losses[-max(1, len(losses) // 10):]
    return dict(pair=pair, model=job['model'], seed=seed, config=cfg, scores=scores, train_s=round(train_s, 1),
                final_loss=sum(tail) / len(tail), params=sum(p.numel() for p in model.parameters()))


def _run_job_safely(job):
    """``run_job`` in a worker: a failed run is reported and the others go on."""
    try:
        return run_job(job)
    except Exception as exc:  # noqa: BLE001  (reported by the parent, one line)
        return dict(pair=job['pair'], model=job['model'], seed=job['seed'], error=f'{type(exc).__name__}: {exc}')


def run_key(pair, model, seed):
    return f'{pair}|{model}|seed{seed}'


def _load_runs(path):
    return json.loads(path.read_text()).get('runs', {}) if path.exists() else {}


def _save_runs(path, runs):
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps({'runs': runs}, indent=1, sort_keys=True) + '\n')
    os.replace(tmp, path)


def baselines(pair, args):
    """Scores of the pair's baseline: MATLAB bicubic (sr) or the degraded input itself."""
    return _scores('bicubic' if PAIRS[pair]['scale'] > 1 else torch.nn.Identity(), pair, args, 'cpu')


# -- summary -------------------------------------------------------------------------------------
def summarize(runs, base, pair, sets):
    """Rows: per model and set, mean +- std over seeds of PSNR, of PSNR - baseline and (paired by
    seed) of PSNR - the reference member's PSNR."""
    ref = PAIRS[pair]['reference']
    rows = []
    for model in PAIRS[pair]['models']:
        mine = {r['seed']: r for r in runs if r['model'] == model}
        for name in sets:
            vals = [mine[s]['scores'][name]['psnr'] for s in sorted(mine)]
            diffs = [mine[s]['scores'][name]['psnr'] - r['scores'][name]['psnr']
                     for s in sorted(mine) for r in runs if r['model'] == ref and r['seed'] == s]
            row = dict(pair=pair, model=model, dataset=name, seeds=len(vals), baseline=base[name]['psnr'])
            if vals:
                row.update(psnr_mean=statistics.mean(vals), psnr_std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
                           above_baseline_min=min(vals) - base[name]['psnr'])
            if diffs and model != ref:
                row.update(diff_mean=statistics.mean(diffs), diff_std=statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
                           diff_seeds=len(diffs))
            rows.append(row)
    return rows


def markdown(rows, configs):
    lines = ['# Quality proxies (small-scale, trained from scratch here; not the papers\' DIV2K results)', '']
    for pair, cfg in configs.items():
        spec = PAIRS[pair]
        lines += [f'## {pair}: ' + ' vs '.join(spec['models']), '',
                  f"Scale x{spec['scale']}, {cfg['iters']} iterations, batch {cfg['batch']}, input patch "
                  f"{cfg['patch']}, Adam lr {cfg['lr']:g} (cosine to 1/100), L1; baseline: {spec['baseline']}"
                  + (f"; blur sigma {BLUR_SIGMA} + noise sigma {NOISE_SIGMA * 255:g}/255, scored on the central "
                     f"{cfg['eval_crop']}x{cfg['eval_crop']} crops" if 'eval_crop' in cfg else '') + ". "
                  f"Difference = model - {spec['reference']}, paired by seed.", '',
                  '| model | set | seeds | PSNR (mean +- std) | baseline | worst seed - baseline | difference (mean +- std) |',
                  '|---|---|---:|---:|---:|---:|---:|']
        for r in rows:
            if r['pair'] != pair or 'psnr_mean' not in r:
                continue
            diff = f"{r['diff_mean']:+.3f} +- {r['diff_std']:.3f} dB over {r['diff_seeds']} seeds" if 'diff_mean' in r else '(reference)'
            lines.append(f"| {r['model']} | {r['dataset']} | {r['seeds']} | {r['psnr_mean']:.3f} +- {r['psnr_std']:.3f} | "
                         f"{r['baseline']:.3f} | {r['above_baseline_min']:+.3f} | {diff} |")
        lines.append('')
    return '\n'.join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    diffs = [r for r in rows if 'diff_mean' in r]
    if not diffs:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.8))
    short = {'Restormer+GLMHA (paper preset)': 'GLMHA paper', 'Restormer+GLMHA (default)': 'GLMHA default'}
    labels = [f"{short.get(r['model'], r['model'])}\n{r['dataset']}" for r in diffs]
    ax.bar(range(len(diffs)), [r['diff_mean'] for r in diffs], yerr=[r['diff_std'] for r in diffs], capsize=3,
           color=['C0' if r['pair'] == 'sr' else 'C1' for r in diffs])
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xticks(range(len(diffs)), labels, fontsize=7)
    ax.set_ylabel('PSNR vs host (dB)')
    ax.set_title('Quality proxies: mean +- std over seeds (small-scale, not DIV2K)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(args):
    for folder in args.train_dirs:
        _images(folder)  # fail before any training or writing when a folder is missing or empty
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / 'quality_runs.json'
    runs = _load_runs(runs_path)
    common = dict(train_dirs=args.train_dirs, eval_root=args.eval_root, sets=args.sets, cache_dir=args.cache_dir,
                  eval_crop=args.eval_crop, device=args.device)
    configs = {pair: _config(args, pair) for pair in args.pairs}
    jobs = []
    for seed in args.seeds:          # seed-major: every model of a seed before the next seed
        for pair in args.pairs:
            for model in PAIRS[pair]['models']:
                done = runs.get(run_key(pair, model, seed))
                if not (done and done['config'] == configs[pair]) and not args.report_only:
                    jobs.append(dict(common, pair=pair, model=model, seed=seed, config=configs[pair]))
    if jobs and any(PAIRS[p]['scale'] == 1 for p in args.pairs):
        degraded_sets(args.eval_root, args.sets, args.cache_dir, args.eval_crop)  # once, before the workers read them

    def finished(result):
        if 'error' in result:
            print(f"FAILED {result['model']} seed {result['seed']}: {result['error']}", flush=True)
            return
        runs[run_key(result['pair'], result['model'], result['seed'])] = result
        _save_runs(runs_path, runs)
        print(f"done {result['model']} seed {result['seed']}: " + ', '.join(
            f"{k} {v['psnr']:.3f}" for k, v in result['scores'].items()) + f" ({result['train_s']:.0f} s)", flush=True)

    if args.jobs <= 1:
        for job in jobs:
            finished(run_job(job))  # in-process: errors propagate
    elif jobs:
        with multiprocessing.get_context('spawn').Pool(args.jobs, maxtasksperchild=1) as pool:
            for result in pool.imap_unordered(_run_job_safely, jobs):
                finished(result)

    rows = []
    bases = {}
    for pair in args.pairs:
        bases[pair] = baselines(pair, common)
        mine = [r for r in runs.values() if r['pair'] == pair and r['config'] == configs[pair]
                and r['seed'] in args.seeds]
        rows += summarize(mine, bases[pair], pair, args.sets)
    meta = dict(metadata(args.device), configs=configs, baselines=bases,
                note='small-scale proxies trained from scratch on T91 + BSD200; not the papers\' DIV2K results')
    md = markdown(rows, configs)
    png = plot(rows, out_dir / 'quality.png')
    if png:
        md += '\n![PSNR differences](quality.png)\n'
    # the report is a function of quality_runs.json and has no timings: no "versus the previous run"
    (out_dir / 'quality.json').unlink(missing_ok=True)
    paths = write_results('quality', meta, rows, md, out_dir)
    print(md)
    print('wrote', *paths, png or '')
    return 0
