"""Metrics of spectral reconstruction from RGB, with the conventions of the NTIRE 2022 challenge
code used by MST++ (Cai et al., CVPRW 2022; ``Loss_MRAE``, ``Loss_RMSE``, ``Loss_PSNR``):

- MRAE = mean(|x - y| / y) over all elements (exact zeros of y replaced by 1e-8, as ``MRAELoss``);
- RMSE = sqrt(mean((x - y)^2)) over all elements, unclipped;
- PSNR: both cubes clamped to [0, data_range], per image 10 log10(data_range^2 / MSE), averaged
  over the images of a batch (MST++: data range 1 after clamping to [0, 1]).

``x`` (``img``) is the prediction, ``y`` (``img2``) the ground truth.  Inputs are float torch
tensors or numpy arrays, one cube ``(C, H, W)`` or a batch ``(N, C, H, W)`` (``input_order='CHW'``),
or a numpy cube ``(H, W, C)`` as stored in ``.mat`` files (``input_order='HWC'``).  They are
compared in float64, never quantised (BasicSR's ``calculate_psnr`` works on uint8 images, which
cannot hold 31 bands).  ``crop_border`` removes that many pixels from each side first (MST++ scores
the ARAD_1K validation images on ``[128:-128, 128:-128]``).  Extra keyword arguments (e.g. the
``better`` key of BasicSR's options) are ignored.
"""
import math

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY

from ..registry import register

__all__ = ['calculate_mrae', 'calculate_rmse', 'calculate_spectral_psnr']


def _as_batch(img, input_order, crop_border, name):
    """float64 tensor (N, C, H, W) with ``crop_border`` pixels removed from each spatial side."""
    t = torch.as_tensor(np.asarray(img) if not torch.is_tensor(img) else img).detach().to('cpu', torch.float64)
    if input_order == 'HWC':
        if t.dim() != 3:
            raise ValueError(f"{name}: input_order 'HWC' needs one (H, W, C) cube, got shape {tuple(t.shape)}")
        t = t.permute(2, 0, 1)
    elif input_order != 'CHW':
        raise ValueError(f"{name}: input_order must be 'CHW' or 'HWC', got {input_order!r}")
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4:
        raise ValueError(f'{name}: expected a (C, H, W) cube or (N, C, H, W) batch, got shape {tuple(t.shape)}')
    if crop_border:
        h, w = t.shape[-2:]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f'{name}: crop_border {crop_border} leaves nothing of a {h}x{w} image')
        t = t[..., crop_border:h - crop_border, crop_border:w - crop_border]
    return t


def _pair(img, img2, input_order, crop_border, name):
    x = _as_batch(img, input_order, crop_border, name)
    y = _as_batch(img2, input_order, crop_border, name)
    if x.shape != y.shape:
        raise ValueError(f'{name}: prediction {tuple(x.shape)} and ground truth {tuple(y.shape)} differ in shape')
    return x, y


@register(METRIC_REGISTRY)
def calculate_mrae(img, img2, crop_border=0, input_order='CHW', eps=1e-8, **kwargs):
    """Mean relative absolute error of ``img`` against the ground truth ``img2`` (lower is better)."""
    x, y = _pair(img, img2, input_order, crop_border, 'calculate_mrae')
    y_safe = torch.where(y == 0, torch.full_like(y, eps), y)
    return ((x - y).abs() / y_safe).mean().item()


@register(METRIC_REGISTRY)
def calculate_rmse(img, img2, crop_border=0, input_order='CHW', **kwargs):
    """Root mean squared error over all elements (lower is better)."""
    x, y = _pair(img, img2, input_order, crop_border, 'calculate_rmse')
    return (x - y).pow(2).mean().sqrt().item()


@register(METRIC_REGISTRY)
def calculate_spectral_psnr(img, img2, crop_border=0, input_order='CHW', data_range=1.0, **kwargs):
    """PSNR in dB of cubes clamped to [0, data_range], per image, averaged over the batch."""
    x, y = _pair(img, img2, input_order, crop_border, 'calculate_spectral_psnr')
    x, y = x.clamp(0, data_range), y.clamp(0, data_range)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    psnr = [math.inf if m == 0 else 10 * math.log10(data_range ** 2 / m) for m in mse.tolist()]
    return float(np.mean(psnr))
