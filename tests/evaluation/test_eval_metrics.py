"""Metric conventions against hand-written references, and LPIPS availability."""
import numpy as np
import pytest
import torch

from agile_ir_plugin.evaluation import LPIPSMetric, quality
from agile_ir_plugin.evaluation.metrics import to_uint8


def _psnr(a, b):
    return 10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


def _matlab_y(bgr):
    # MATLAB rgb2ycbcr luma of 8-bit RGB, kept in float
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def test_y_channel_psnr_with_border_crop_matches_hand_formula():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    sr = np.clip(gt.astype(int) + rng.integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)
    sr[:3] = 0  # errors inside the border do not count
    got = quality(sr, gt, crop_border=3, metrics=('psnr', 'psnr_rgb'))
    assert got['psnr'] == pytest.approx(_psnr(_matlab_y(sr)[3:-3, 3:-3], _matlab_y(gt)[3:-3, 3:-3]), abs=1e-3)
    assert got['psnr_rgb'] == pytest.approx(_psnr(sr[3:-3, 3:-3], gt[3:-3, 3:-3]), abs=1e-9)


def test_grayscale_ground_truth_scored_on_gray_level():
    rng = np.random.default_rng(1)
    gray_gt = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    gray_sr = np.clip(gray_gt.astype(int) + rng.integers(-5, 6, gray_gt.shape), 0, 255).astype(np.uint8)
    gt, sr = np.repeat(gray_gt[..., None], 3, 2), np.repeat(gray_sr[..., None], 3, 2)
    got = quality(sr, gt, crop_border=2, metrics=('psnr',), gray=True)
    assert got['psnr'] == pytest.approx(_psnr(gray_sr[2:-2, 2:-2], gray_gt[2:-2, 2:-2]), abs=1e-9)
    # the Y of the replicated image would be 20*log10(255/219) dB higher
    as_color = quality(sr, gt, crop_border=2, metrics=('psnr',))['psnr']
    assert as_color - got['psnr'] == pytest.approx(20 * np.log10(255 / 219), abs=0.01)


def test_to_uint8_is_basicsr_tensor2img():
    from basicsr.utils.img_util import tensor2img
    t = torch.rand(1, 3, 40, 50) * 1.2 - 0.1
    t[0, :, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 254.5]) / 255  # ties: round half to even
    ours = to_uint8(t)
    np.testing.assert_array_equal(ours, tensor2img(t.clone()))  # BGR uint8, bit for bit
    np.testing.assert_array_equal(ours[0, :4, 0], [0, 2, 2, 254])
    np.testing.assert_array_equal(ours[..., 0], to_uint8(t[:, [2, 1, 0]])[..., 2])


def test_lpips_without_local_backbone_is_unavailable_with_reason(tmp_path, monkeypatch):
    pytest.importorskip('lpips')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    metric = LPIPSMetric('alex')
    assert not metric.available
    assert str(tmp_path) in metric.reason and 'not found' in metric.reason


def test_lpips_with_local_backbone_file(tmp_path):
    lpips = pytest.importorskip('lpips')
    import torchvision
    torch.manual_seed(0)
    backbone = torchvision.models.alexnet(weights=None)
    path = tmp_path / 'alexnet.pth'
    torch.save(backbone.state_dict(), path)  # stands in for the ImageNet file a user has locally
    metric = LPIPSMetric('alex', weights=path)
    assert metric.available
    torch.testing.assert_close(metric.model.net.slice1[0].weight, backbone.features[0].weight)
    torch.testing.assert_close(getattr(metric.model.net.slice5, '10').weight, backbone.features[10].weight)
    ref = lpips.LPIPS(net='alex', pnet_rand=True, verbose=False)
    ref.net.load_state_dict({k: v for k, v in metric.model.net.state_dict().items()})
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert metric(a, a) == pytest.approx(0, abs=1e-7)
    with torch.no_grad():
        expected = float(ref(a * 2 - 1, b * 2 - 1))
    assert metric(a, b) == pytest.approx(expected, rel=1e-5)
