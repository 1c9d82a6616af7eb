"""``evaluate(model, datasets, scale, root)``: the leaderboard rows of any SR ``nn.Module``.

A model is anything mapping a 1x3xhxw RGB float tensor in [0, 1] to a 1x3x(s*h)x(s*w) one (our
archs, a BasicSR or spandrel model, a user's own), or the name ``'bicubic'`` for the MATLAB
bicubic baseline.  Each (dataset, scale) gives one row::

    {'model', 'dataset', 'scale', 'psnr', 'ssim', ['psnr_rgb', 'ssim_rgb'], 'lpips', 'lpips_note',
     'n_images', 'convention', 'lr_source', 'crop_border', 'pad_multiple', 'tile', 'self_ensemble', 'device',
     'time_model_s', 'time_metric_s', [efficiency fields, see ``efficiency.measure``]}

with the dataset means of the per-image metrics (see ``metrics`` for the conventions: ``'basicsr'``,
the default, equals BasicSR's test pipeline; ``'matlab'`` scores a grayscale ground truth on its
gray level as the MATLAB-era tables do).
"""
import logging
import os
import time
from pathlib import Path

import cv2
import torch

from .bicubic import MatlabBicubic
from .datasets import load_pair, resolve_dataset, to_tensor
from .efficiency import measure
from .inference import Predictor
from .metrics import QUALITY_METRICS, LPIPSMetric, bgr_uint8_to_rgb_tensor, check_convention, quality, to_uint8

logger = logging.getLogger('agile_ir_plugin.evaluation')

DEFAULT_DATASETS = ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109')


def build_named_model(name, scale):
    """Models that need no checkpoint: ``'bicubic'``."""
    if name.lower() == 'bicubic':
        return MatlabBicubic(scale)
    raise ValueError(f'unknown model name {name!r}: pass an nn.Module, or "bicubic"')


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def evaluate(model, datasets=DEFAULT_DATASETS[:3], scale=4, root=None, device=None, tile=None, tile_overlap=32,
             tile_blend=None, pad_multiple=None, self_ensemble=False, metrics=('psnr', 'ssim'), crop_border=None,
             save_dir=None, lpips_net='alex', lpips_weights=None, efficiency=False, efficiency_options=None,
             name=None, progress=True, generate_lr=True, convention='basicsr', on_image=None, y_channel=True):
    """Score ``model`` on ``datasets`` at ``scale`` (int or list of ints); returns a list of row dicts.

    datasets: names resolved under ``root`` (see ``datasets.resolve_dataset`` for the layouts),
        directories, or dicts ``{'name', 'hr', 'lr'}``.  All are resolved before any inference, so
        a missing one fails at once with a FileNotFoundError naming the path.
    tile / tile_overlap / tile_blend: LR tile size (None: whole image), overlap and blending width
        (``inference.tiled_forward``).  pad_multiple: overrides the model's ``window_size``.
    metrics: any of ``psnr, ssim, psnr_rgb, ssim_rgb, lpips``; ``crop_border`` defaults to the scale
        (0 at scale 1).  LPIPS uses ``lpips_weights`` or torchvision's cache, else is None with a note.
    save_dir: write the 8-bit SR images to ``save_dir/{dataset}/X{scale}/{image}.png``.
    efficiency: add params / MACs / latency / memory (``efficiency.measure``, options in
        ``efficiency_options``) to the rows of each scale.
    convention: ``'basicsr'`` (BasicSR's test pipeline, default) or ``'matlab'`` (``metrics.CONVENTIONS``).
    y_channel: False scores ``psnr``/``ssim`` on RGB (BasicSR's ``test_y_channel: false``); the row's
        ``channel`` says which.
    on_image: called as ``on_image(dataset_name, scale, hr_path, sr_img, gt_img, scores)`` for every
        image (8-bit BGR images, mod-cropped; ``scores``: that image's metrics), e.g. for pictures.
    """
    check_convention(convention)
    unknown = set(metrics) - set(QUALITY_METRICS)
    if unknown:
        raise ValueError(f'unknown metrics {sorted(unknown)}; choose from {QUALITY_METRICS}')
    if isinstance(datasets, (str, os.PathLike, dict)):
        datasets = [datasets]
    scales = [scale] if isinstance(scale, int) else list(scale)
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    resolved = {s: [resolve_dataset(d, s, root=root, generate_lr=generate_lr) for d in datasets] for s in scales}

    lpips_metric = None
    if 'lpips' in metrics:
        lpips_metric = LPIPSMetric(lpips_net, lpips_weights, device=device)
        if not lpips_metric.available:
            logger.warning('LPIPS n/a: %s', lpips_metric.reason)

    rows = []
    for s in scales:
        net = build_named_model(model, s) if isinstance(model, str) else model
        model_name = name or (model if isinstance(model, str) else type(model).__name__)
        net = net.to(device).eval()
        predictor = Predictor(net, s, tile=tile, tile_overlap=tile_overlap, tile_blend=tile_blend,
                              pad_multiple=pad_multiple, use_self_ensemble=self_ensemble)
        border = s if crop_border is None else crop_border
        border = 0 if s == 1 and crop_border is None else border
        eff = {}
        if efficiency:
            eff = measure(net, s, device=device, pad_multiple=pad_multiple, **(efficiency_options or {}))
        for dataset in resolved[s]:
            if dataset.lr_generated:
                logger.warning('%s x%d: %s', dataset.name, s, dataset.lr_source)
            row = _evaluate_dataset(predictor, dataset, s, border, metrics, lpips_metric, device, save_dir, progress,
                                    model_name, convention, on_image, y_channel)
            row.update(model=model_name, convention=convention, channel='Y' if y_channel else 'RGB',
                       pad_multiple=predictor.multiple, tile=tile,
                       self_ensemble=self_ensemble, device=str(device))
            row.update(eff)
            rows.append(row)
    return [_ordered(row) for row in rows]


def _evaluate_dataset(predictor, dataset, scale, border, metrics, lpips_metric, device, save_dir, progress, model_name,
                      convention, on_image, y_channel):
    sums = {m: 0.0 for m in metrics if m != 'lpips'}
    lpips_sum = 0.0
    time_model = time_metric = 0.0
    out_dir = Path(save_dir) / dataset.name / f'X{scale}' if save_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    pairs = dataset.pairs
    if progress:
        from tqdm import tqdm
        # disable=None: a bar on a terminal, nothing in a log file
        pairs = tqdm(pairs, desc=f'{model_name} {dataset.name} x{scale}', unit='img', leave=False, dynamic_ncols=True,
                     disable=None)
    for hr_path, lr_path in pairs:
        lr, gt_img, gray = load_pair(hr_path, lr_path, scale, convention)
        x = to_tensor(lr, device)
        start = time.perf_counter()
        sr = predictor(x)
        _sync(device)
        time_model += time.perf_counter() - start
        start = time.perf_counter()
        sr_img = to_uint8(sr)
        scores = quality(sr_img, gt_img, border, metrics, gray=gray, y_channel=y_channel)
        for key, value in scores.items():
            sums[key] += value
        if lpips_metric is not None and lpips_metric.available:
            lpips_sum += lpips_metric(bgr_uint8_to_rgb_tensor(sr_img, border), bgr_uint8_to_rgb_tensor(gt_img, border))
        time_metric += time.perf_counter() - start
        if out_dir:
            cv2.imwrite(str(out_dir / f'{hr_path.stem}.png'), sr_img)
        if on_image is not None:
            on_image(dataset.name, scale, hr_path, sr_img, gt_img, scores)
    n = len(dataset)
    row = {'dataset': dataset.name, 'scale': scale, 'n_images': n, 'crop_border': border,
           'lr_source': dataset.lr_source}
    row.update({key: total / n for key, total in sums.items()})
    if 'lpips' in metrics:
        if lpips_metric.available:
            row.update(lpips=lpips_sum / n, lpips_note=f'LPIPS {lpips_metric.net_name}, {lpips_metric.source}')
        else:
            row.update(lpips=None, lpips_note=lpips_metric.reason)
    row.update(time_model_s=time_model, time_metric_s=time_metric)
    return row


_ORDER = ('model', 'dataset', 'scale', 'psnr', 'ssim', 'psnr_rgb', 'ssim_rgb', 'lpips', 'n_images', 'convention')


def _ordered(row):
    row.setdefault('psnr', None)
    row.setdefault('ssim', None)
    return {**{k: row[k] for k in _ORDER if k in row}, **{k: v for k, v in row.items() if k not in _ORDER}}
