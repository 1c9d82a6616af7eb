"""Efficiency figures against hand-computed values."""
import pytest
import torch
from torch import nn

from agile_ir_plugin.evaluation import LiveTensorBytes, measure
from agile_ir_plugin.evaluation.efficiency import hd_lr_size


class ConvShuffle(nn.Module):
    def __init__(self, scale, k=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * scale * scale, k, padding=k // 2)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.conv(x))


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_conv_params_and_macs_are_exact(scale):
    model = ConvShuffle(scale)
    row = measure(model, scale, runs=2, warmup=1)
    cout = 3 * scale * scale
    assert row['params'] == cout * 3 * 9 + cout
    # one MAC per weight tap per output position (bias adds are not multiply-accumulates)
    assert row['macs_lr256'] == 256 * 256 * cout * 3 * 9
    h, w = round(720 / scale), round(1280 / scale)
    assert (h, w) == hd_lr_size(scale)
    assert row['macs_720p'] == h * w * cout * 3 * 9
    assert row['macs_720p_input'] == f'{w}x{h}'
    assert row['latency_ms'] > 0 and 'CPU' in row['device_name']
    # live tensors at the peak: conv output and pixel-shuffle output, 4 bytes each value
    assert row['memory_mb'] * 2 ** 20 == 2 * 256 * 256 * cout * 4
    assert 'CPU' in row['memory_note']


def test_live_tensor_bytes_tracks_peak_and_release():
    x = torch.rand(1000)
    w = torch.rand(1000)
    mode = LiveTensorBytes([x, w])
    with mode:
        a = x * 2          # +4000
        b = a + w          # +4000 (peak 8000)
        del a              # -4000
        c = b.view(10, 100)  # a view: same storage, nothing new
        b.mul_(3)          # in place: nothing new
        d = torch.cat([c, c])  # +8000 (peak 12000)
    assert mode.peak == 12000
    assert mode.current == 12000
    del b, c, d
    assert mode.current == 0
