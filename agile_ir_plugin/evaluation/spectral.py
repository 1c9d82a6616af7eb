"""Leaderboard rows for spectral reconstruction (RGB -> hyperspectral cube), NTIRE 2022 style.

``evaluate_spectral(model, gt_dir, rgb_dir)`` runs ``model`` (RGB (1, 3, H, W) in, cube
(1, C, H, W) out) over every cube/RGB pair that BasicSR's ``HSIDataset`` finds (full images, the
RGB normalised as MST++ does) and averages per image the metrics of ``SpectralModel``'s
validation: MRAE, RMSE and PSNR (data range 1, outputs clamped to [0, 1] for PSNR), with
``crop_border`` pixels (128 for NTIRE 2022 validation) removed from every side.
``spectral_scores`` scores one image so; MMagic's ``agile_ir.SpectralMetrics`` calls it too.
"""
import time

import torch

from ..basicsr.data.hsi_dataset import HSIDataset
from ..basicsr.metrics.spectral_metrics import calculate_mrae, calculate_rmse, calculate_spectral_psnr


def spectral_scores(pred, gt, crop_border=128, data_range=1.0):
    """{mrae, rmse, psnr} of one predicted cube against its ground truth, both (C, H, W)."""
    return {'mrae': calculate_mrae(pred, gt, crop_border=crop_border),
            'rmse': calculate_rmse(pred, gt, crop_border=crop_border),
            'psnr': calculate_spectral_psnr(pred, gt, crop_border=crop_border, data_range=data_range)}


@torch.no_grad()
def evaluate_spectral(model, gt_dir, rgb_dir, meta_info_file=None, crop_border=128, mat_key='cube',
                      rgb_norm='minmax', device='cpu', model_name=None, dataset_name='NTIRE2022'):
    """One row ``{model, dataset, scale: 1, mrae, rmse, psnr, n_images, seconds}`` (means over images)."""
    dataset = HSIDataset({'phase': 'val', 'dataroot_gt': gt_dir, 'dataroot_lq': rgb_dir,
                          'meta_info_file': meta_info_file, 'mat_key': mat_key, 'rgb_norm': rgb_norm})
    model = model.to(device).eval()
    sums = {'mrae': 0.0, 'rmse': 0.0, 'psnr': 0.0}
    start = time.perf_counter()
    for i in range(len(dataset)):
        item = dataset[i]
        pred = model(item['lq'][None].to(device)).float().cpu()[0]
        gt = item['gt']
        if pred.shape != gt.shape:
            raise ValueError(f"{item['lq_path']}: the model returned {tuple(pred.shape)}, "
                             f"the cube {item['gt_path']} is {tuple(gt.shape)}")
        for key, value in spectral_scores(pred, gt, crop_border).items():
            sums[key] += value
    n = len(dataset)
    return {'model': model_name or type(model).__name__, 'dataset': dataset_name, 'scale': 1,
            **{k: v / n for k, v in sums.items()}, 'n_images': n, 'seconds': time.perf_counter() - start}
