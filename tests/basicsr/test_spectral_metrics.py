"""MRAELoss and the spectral metrics against hand-computed values (MST++ conventions), and
SpectralModel's float validation against metrics recomputed by hand on the network's output."""
import math

import numpy as np
import pytest
import scipy.io
import torch
from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY

from agile_ir_plugin.basicsr.losses.mrae_loss import MRAELoss
from agile_ir_plugin.basicsr.metrics.spectral_metrics import calculate_mrae, calculate_rmse, calculate_spectral_psnr

# one 1x2x2 "cube": prediction x and ground truth y
X = torch.tensor([[[2.0, 2.0], [3.0, 5.0]]])
Y = torch.tensor([[[1.0, 2.0], [4.0, 5.0]]])


def test_registered():
    assert LOSS_REGISTRY.get('MRAELoss') is MRAELoss
    for name in ('calculate_mrae', 'calculate_rmse', 'calculate_spectral_psnr'):
        assert METRIC_REGISTRY.get(name) is not None


def test_mrae_loss_value_and_gradient():
    # |2-1|/1 + 0 + |3-4|/4 + 0 = 1.25, mean over 4 elements
    pred = X.clone().unsqueeze(0).requires_grad_()
    loss = MRAELoss()(pred, Y.unsqueeze(0))
    assert loss.item() == pytest.approx(1.25 / 4)
    loss.backward()
    # d/dx |x - y| / y / N = sign(x - y) / (y N); zero where x == y (sign 0)
    expected = torch.tensor([[[[1 / 4, 0.0], [-1 / 16, 0.0]]]])
    torch.testing.assert_close(pred.grad, expected)
    assert MRAELoss(loss_weight=2.0, reduction='sum')(X[None], Y[None]).item() == pytest.approx(2 * 1.25)


def test_mrae_zero_ground_truth_uses_eps():
    pred, gt = torch.tensor([[[[0.5, 0.2]]]]), torch.tensor([[[[0.0, 0.4]]]])
    # 0.5 / 1e-8 for the zero entry (MST++'s Loss_MRAE_custom), 0.2 / 0.4 for the other
    assert MRAELoss()(pred, gt).item() == pytest.approx((0.5 / 1e-8 + 0.5) / 2, rel=1e-6)
    assert calculate_mrae(pred, gt) == pytest.approx((0.5 / 1e-8 + 0.5) / 2, rel=1e-6)
    with pytest.raises(ValueError, match='differ in shape'):
        MRAELoss()(pred, gt[..., :1])


def test_mrae_and_rmse_hand_computed():
    assert calculate_mrae(X, Y) == pytest.approx(0.3125)
    assert calculate_rmse(X, Y) == pytest.approx(math.sqrt((1 + 0 + 1 + 0) / 4))
    # the same cube as a numpy (H, W, C) array, as read from a .mat file
    assert calculate_mrae(X.permute(1, 2, 0).numpy(), Y.permute(1, 2, 0).numpy(), input_order='HWC') == \
        pytest.approx(0.3125)


def test_psnr_clamps_to_data_range_and_averages_per_image():
    x = torch.tensor([[[[0.5, 0.25], [1.5, -0.2]]], [[[0.1, 0.1], [0.1, 0.1]]]])  # (2, 1, 2, 2)
    y = torch.tensor([[[[0.5, 0.5], [1.0, 0.1]]], [[[0.1, 0.1], [0.1, 0.3]]]])
    # image 0 after clamping x to [0, 1]: errors 0, .25, 0, .1 ; image 1: 0, 0, 0, .2
    mse0, mse1 = (0.25 ** 2 + 0.1 ** 2) / 4, 0.2 ** 2 / 4
    expected = (10 * math.log10(1 / mse0) + 10 * math.log10(1 / mse1)) / 2
    assert calculate_spectral_psnr(x, y) == pytest.approx(expected)
    assert calculate_spectral_psnr(x, y) != pytest.approx(10 * math.log10(1 / ((mse0 + mse1) / 2)))
    assert calculate_spectral_psnr(y, y) == math.inf


def test_crop_border_scores_the_centre_only():
    gt = torch.full((2, 10, 12), 0.5)
    pred = gt.clone()
    pred[:, :3] += 0.2      # errors only within 3 px of the border
    pred[:, :, -3:] -= 0.1
    assert calculate_mrae(pred, gt) > 0 and calculate_rmse(pred, gt) > 0
    assert calculate_mrae(pred, gt, crop_border=3) == 0
    assert calculate_rmse(pred, gt, crop_border=3) == 0
    assert calculate_spectral_psnr(pred, gt, crop_border=3) == math.inf
    pred[0, 3, 3] = 0.6     # one error inside: 0.1 / 0.5 over 2 x 4 x 6 values
    assert calculate_mrae(pred, gt, crop_border=3) == pytest.approx(0.2 / 48, rel=1e-5)
    with pytest.raises(ValueError, match='leaves nothing'):
        calculate_rmse(pred, gt, crop_border=5)


# ------------------------------------------------------------------------------ SpectralModel
class TinySpectralNet(torch.nn.Module):
    def __init__(self, in_channels=3, out_channels=5):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return torch.sigmoid(self.conv(x))


def test_spectral_model_validates_on_float_cubes(tmp_path):
    import h5py
    import cv2
    from basicsr.utils.registry import ARCH_REGISTRY
    from torch.utils.data import DataLoader

    from agile_ir_plugin.basicsr.data.hsi_dataset import HSIDataset
    from agile_ir_plugin.basicsr.models.spectral_model import SpectralModel

    if 'TinySpectralNetForTests' not in ARCH_REGISTRY:
        ARCH_REGISTRY._do_register('TinySpectralNetForTests', TinySpectralNet)
    rng = np.random.default_rng(0)
    (tmp_path / 'Spec').mkdir()
    (tmp_path / 'RGB').mkdir()
    for i in range(2):
        with h5py.File(tmp_path / 'Spec' / f's{i}.mat', 'w') as f:
            f['cube'] = rng.uniform(0.05, 1, (5, 18, 14)).astype(np.float32)  # (C, W, H): a 14x18 image
        cv2.imwrite(str(tmp_path / 'RGB' / f's{i}.png'), rng.integers(0, 255, (14, 18, 3), dtype=np.uint8))
    ds = HSIDataset({'name': 'tinyval', 'phase': 'val', 'dataroot_gt': str(tmp_path / 'Spec'),
                     'dataroot_lq': str(tmp_path / 'RGB')})
    metrics = {'mrae': {'type': 'calculate_mrae', 'crop_border': 2, 'better': 'lower'},
               'rmse': {'type': 'calculate_rmse', 'crop_border': 2, 'better': 'lower'},
               'psnr': {'type': 'calculate_spectral_psnr', 'crop_border': 2}}
    opt = {'name': 'unit', 'model_type': 'SpectralModel', 'scale': 1, 'num_gpu': 0, 'is_train': False,
           'dist': False, 'rank': 0, 'world_size': 1,
           'network_g': {'type': 'TinySpectralNetForTests'},
           'path': {'pretrain_network_g': None, 'visualization': str(tmp_path / 'vis')},
           'val': {'window_size': 8, 'save_img': True, 'suffix': None, 'metrics': metrics}}
    torch.manual_seed(0)
    model = SpectralModel(opt)
    model.validation(DataLoader(ds, batch_size=1), 'it', None, save_img=True)
    assert set(model.net_g.sizes) == {(16, 24)}  # padded to multiples of 8

    # recompute every metric by hand from the network's output on the padded input
    outputs, by_hand = [], {'mrae': [], 'rmse': [], 'psnr': []}
    for item in ds:
        lq = torch.nn.functional.pad(item['lq'][None], (0, 6, 0, 2), mode='reflect')
        with torch.no_grad():
            out = model.net_g(lq)[0, :, :14, :18].double().numpy()[:, 2:-2, 2:-2]
        gt = item['gt'].double().numpy()[:, 2:-2, 2:-2]
        by_hand['mrae'].append(np.mean(np.abs(out - gt) / gt))
        by_hand['rmse'].append(np.sqrt(np.mean((out - gt) ** 2)))
        by_hand['psnr'].append(10 * np.log10(1 / np.mean((np.clip(out, 0, 1) - np.clip(gt, 0, 1)) ** 2)))
        outputs.append(out)
    for name, values in by_hand.items():
        assert model.metric_results[name] == pytest.approx(np.mean(values), rel=1e-6), name
    assert model.best_metric_results['tinyval']['mrae']['better'] == 'lower'
    saved = scipy.io.loadmat(str(tmp_path / 'vis' / 'tinyval' / 's0_unit.mat'))['cube']
    assert saved.shape == (14, 18, 5)
    np.testing.assert_allclose(saved.transpose(2, 0, 1)[:, 2:-2, 2:-2], outputs[0], atol=1e-6)
