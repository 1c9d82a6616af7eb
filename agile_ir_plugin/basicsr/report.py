"""The end of a training run: the closing summary and the pictures in the experiment folder.

- ``bicubic_metrics``: the validation metrics of MATLAB-bicubic upscaling of each validation LR
  (``evaluation.bicubic.MatlabBicubic``, BasicSR's ``tensor2img`` and ``calculate_metric``, the same
  path as ``SRModel.nondist_validation``), so the summary says whether the model beats bicubic.
- ``training_curve.png``: loss and validation PSNR against iteration (this run's), with the bicubic
  PSNR as a dashed line; ``comparison.png``: bicubic | model | HR of a crop of the first validation
  image.  matplotlib (Agg) draws the curve; without it one INFO line says so.
- ``log_summary``: last and best metrics, model vs bicubic, checkpoint paths, wall time.
"""
import math
from os import path as osp

import numpy as np
import torch

CURVE_FILE, COMPARISON_FILE = 'training_curve.png', 'comparison.png'


def _val_images(loader):
    """Validation samples with a ground truth of the input's channels (not RGB -> spectral)."""
    for data in loader:
        if 'gt' in data and data['gt'].shape[1] == data['lq'].shape[1] and data['gt'].shape[1] in (1, 3):
            yield data


@torch.no_grad()
def bicubic_metrics(loader, opt):
    """``{metric: mean}`` of bicubic upscaling over ``loader`` for the options' ``val.metrics``
    (empty for a task without upscaling: its baseline would be the input itself)."""
    if opt.get('scale', 1) <= 1:
        return {}
    from basicsr.metrics import calculate_metric
    from basicsr.utils import tensor2img

    from ..evaluation.bicubic import MatlabBicubic
    upscale = MatlabBicubic(opt['scale'])
    sums, count = {}, 0
    for data in _val_images(loader):
        sr = tensor2img([upscale(data['lq'].double()).float()])
        gt = tensor2img([data['gt']])
        sr = sr[:gt.shape[0], :gt.shape[1]]
        for name, metric_opt in opt['val']['metrics'].items():
            sums[name] = sums.get(name, 0.0) + float(calculate_metric({'img': sr, 'img2': gt}, dict(metric_opt)))
        count += 1
    return {k: v / count for k, v in sums.items()} if count else {}


@torch.no_grad()
def write_comparison(model, loader, opt, path, crop=128):
    """bicubic | model | HR (for scale 1: input | model | GT) of a ``crop`` x ``crop`` centre crop of the
    first validation image; None when there is no such image."""
    import cv2
    from basicsr.utils import tensor2img

    from ..evaluation.bicubic import MatlabBicubic
    data = next(_val_images(loader), None)
    if data is None:
        return None
    model.feed_data(data)
    model.test()
    sr = tensor2img([model.get_current_visuals()['result']])
    bic = tensor2img([MatlabBicubic(opt['scale'])(data['lq'].double()).float()])
    gt = tensor2img([data['gt']])
    h, w = gt.shape[:2]
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    tiles = [img[top:top + ch, left:left + cw] for img in (bic, sr, gt)]
    gap = np.full((ch, 4) + gt.shape[2:], 255, dtype=gt.dtype)
    cv2.imwrite(path, np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
    return path


def write_curve(history, bicubic, path, logger):
    """Loss (every iteration) and validation PSNR (each validation) of this run; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
    except ImportError:
        logger.info(f'matplotlib is not installed: no {osp.basename(path)} (pip install matplotlib).')
        return None
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
    names = sorted({k for _, log in history.losses for k in log if k.startswith('l_')})
    for name in names:
        points = [(it, log[name]) for it, log in history.losses if name in log and math.isfinite(log[name])]
        if points:
            ax_loss.plot(*zip(*points), label=name, linewidth=0.8)
    ax_loss.set(xlabel='iteration', ylabel='loss', title='training loss')
    if names:
        ax_loss.legend()
    for dataset in sorted({d for _, d, _ in history.validations}):
        points = [(it, m['psnr']) for it, d, m in history.validations if d == dataset and 'psnr' in m]
        if points:
            ax_psnr.plot(*zip(*points), marker='o', label=f'model ({dataset})')
        if 'psnr' in bicubic.get(dataset, {}):
            ax_psnr.axhline(bicubic[dataset]['psnr'], linestyle='--', color='gray', label=f'bicubic ({dataset})')
    ax_psnr.set(xlabel='iteration', ylabel='PSNR (dB)', title='validation PSNR')
    if ax_psnr.get_legend_handles_labels()[0]:
        ax_psnr.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _metrics_text(metrics):
    return ', '.join(f'{k} {v:.4f}' for k, v in metrics.items())


def log_summary(logger, opt, model, history, bicubic, files, wall_time, current_iter):
    """The closing summary: one block of INFO lines."""
    lines = [f'Summary of {opt["name"]}: trained to iter {current_iter:,} in {wall_time} (this run).']
    best_all = getattr(model, 'best_metric_results', {})
    for dataset in sorted({d for _, d, _ in history.validations}):
        it, _, last = history.last_validation(dataset)
        best = best_all.get(dataset, {})
        best_text = ', '.join(f'{k} {v["val"]:.4f} @ iter {v["iter"]}' for k, v in best.items())
        lines.append(f'  {dataset}: last (iter {it}): {_metrics_text(last)}; best: {best_text}')
        if bicubic.get(dataset):
            diff = ', '.join(f'{k} {last[k] - v:+.4f}' for k, v in bicubic[dataset].items() if k in last)
            lines.append(f'  {dataset}: bicubic: {_metrics_text(bicubic[dataset])}; model - bicubic: {diff}')
    for what, path in files:
        lines.append(f'  {what}: {path}')
    for line in lines:
        logger.info(line)
