"""evaluate_spectral: MRAE / RMSE / PSNR rows of an RGB -> cube model, checked by hand."""
import math

import cv2
import numpy as np
import pytest
import torch

from agile_ir_plugin.basicsr.data.hsi_dataset import HSIDataset
from agile_ir_plugin.evaluation import evaluate_spectral


def write_pairs(root, n=2, h=12, w=16, c=5, seed=0):
    scipy_io = pytest.importorskip('scipy.io')
    rng = np.random.default_rng(seed)
    (root / 'spec').mkdir(parents=True)
    (root / 'rgb').mkdir()
    for i in range(n):
        scipy_io.savemat(root / 'spec' / f'ARAD_{i}.mat', {'cube': rng.uniform(0.05, 0.9, (h, w, c)).astype(np.float32)})
        cv2.imwrite(str(root / 'rgb' / f'ARAD_{i}.png'), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root / 'spec', root / 'rgb'


def test_rows_equal_hand_computed_metrics(tmp_path):
    gt_dir, rgb_dir = write_pairs(tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 5, 1)
    border = 2
    row = evaluate_spectral(model, gt_dir, rgb_dir, crop_border=border, model_name='conv1x1')

    items = HSIDataset({'phase': 'val', 'dataroot_gt': str(gt_dir), 'dataroot_lq': str(rgb_dir)})
    mrae, rmse, psnr = [], [], []
    for i in range(len(items)):
        with torch.no_grad():
            p = model(items[i]['lq'][None])[0].double().numpy()[:, border:-border, border:-border]
        g = items[i]['gt'].double().numpy()[:, border:-border, border:-border]
        mrae.append(np.mean(np.abs(p - g) / g))
        rmse.append(np.sqrt(np.mean((p - g) ** 2)))
        psnr.append(10 * math.log10(1 / np.mean((np.clip(p, 0, 1) - g) ** 2)))
    assert row['model'] == 'conv1x1' and row['n_images'] == 2 and row['scale'] == 1
    assert row['mrae'] == pytest.approx(np.mean(mrae), rel=1e-5)
    assert row['rmse'] == pytest.approx(np.mean(rmse), rel=1e-5)
    assert row['psnr'] == pytest.approx(np.mean(psnr), abs=1e-4)


def test_identity_like_model_scores_perfectly_and_shape_mismatch_is_one_clear_error(tmp_path):
    gt_dir, rgb_dir = write_pairs(tmp_path, c=3)
    items = HSIDataset({'phase': 'val', 'dataroot_gt': str(gt_dir), 'dataroot_lq': str(rgb_dir)})
    cubes = {items[i]['lq_path']: items[i]['gt'] for i in range(len(items))}

    class Oracle(torch.nn.Module):  # returns the ground truth of whichever RGB it is given
        def forward(self, x):
            for i in range(len(items)):
                if torch.equal(items[i]['lq'], x[0]):
                    return cubes[items[i]['lq_path']][None]
            raise AssertionError('unknown input')

    row = evaluate_spectral(Oracle(), gt_dir, rgb_dir, crop_border=0)
    assert row['mrae'] == 0 and row['rmse'] == 0 and math.isinf(row['psnr'])
    with pytest.raises(ValueError, match=r'returned \(4, 12, 16\).*is \(3, 12, 16\)'):
        evaluate_spectral(torch.nn.Conv2d(3, 4, 1), gt_dir, rgb_dir, crop_border=0)
