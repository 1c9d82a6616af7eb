"""Tiled inference, padding to a window multiple and the x8 self-ensemble, against whole-image /
brute-force references."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agile_ir_plugin.evaluation import MatlabBicubic, Predictor, pad_multiple_of, padded_forward, self_ensemble
from agile_ir_plugin.evaluation import tiled_forward


class LocalSR(nn.Module):
    """Convs with a known receptive field (radius ``layers`` LR pixels) + pixel shuffle."""

    def __init__(self, scale=2, layers=3, feat=8):
        super().__init__()
        chans = [3] + [feat] * (layers - 1) + [3 * scale * scale]
        layers = [m for a, b in zip(chans, chans[1:]) for m in (nn.Conv2d(a, b, 3, padding=1), nn.GELU())]
        self.body = nn.Sequential(*layers[:-1])
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.body(x))


def _image(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('overlap,blend', [(16, None), (8, 0), (12, 4)])
def test_tiled_equals_whole_when_receptive_field_fits_the_margin(overlap, blend):
    torch.manual_seed(0)
    model = LocalSR(scale=2, layers=3).eval()  # receptive field 7 LR px (radius 3) < overlap
    x = _image(45, 70)
    with torch.no_grad():
        whole = model(x)
        tiled = tiled_forward(model, x, 2, tile=24, overlap=overlap, blend=blend)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_tiled_differs_when_the_margin_is_too_small():
    torch.manual_seed(0)
    model = LocalSR(scale=2, layers=3).eval()
    x = _image(45, 70)
    with torch.no_grad():
        err = (tiled_forward(model, x, 2, tile=24, overlap=2, blend=0) - model(x)).abs().max()
    assert err > 1e-3  # the equality above is not vacuous


def test_tiled_bicubic_model_equals_whole_image():
    model = MatlabBicubic(3)  # 4-tap kernel: radius 2 LR pixels
    x = _image(50, 61)
    torch.testing.assert_close(tiled_forward(model, x, 3, tile=20, overlap=10), model(x), atol=1e-5, rtol=0)


class WindowModel(nn.Module):
    """Refuses sizes that are not a multiple of its window, like window-attention SR models."""
    window_size = 8

    def forward(self, x):
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        return F.interpolate(x.cumsum(-1) / x.shape[-1], scale_factor=2, mode='nearest')


def test_padding_to_window_multiple_and_crop_back():
    model = WindowModel()
    assert pad_multiple_of(model) == 8 and pad_multiple_of(model, 4) == 4
    x = _image(13, 21)
    out = padded_forward(model, x, 2, multiple=8)
    ref = model(F.pad(x, (0, 3, 0, 3), mode='reflect'))[..., :26, :42]
    assert out.shape == (1, 3, 26, 42)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match='not x3'):
        padded_forward(model, x, 3, multiple=8)


class EquivariantSR(nn.Module):
    """A conv whose kernel is invariant under the 8 flips/transposes, then nearest x2: commutes
    with every dihedral transform."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 5, padding=2)
        with torch.no_grad():
            w = self.conv.weight
            wt = w.transpose(2, 3)
            sym = sum(t for k in range(4) for t in (torch.rot90(w, k, (2, 3)), torch.rot90(wt, k, (2, 3))))
            self.conv.weight.copy_(sym / 8)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2, mode='nearest')


def test_self_ensemble_of_equivariant_model_is_plain_output():
    torch.manual_seed(0)
    model = EquivariantSR().eval()
    x = _image(11, 14)
    with torch.no_grad():
        torch.testing.assert_close(self_ensemble(model, x), model(x), atol=1e-6, rtol=0)


def test_self_ensemble_matches_brute_force_dihedral_average():
    torch.manual_seed(0)
    model = LocalSR(scale=2, layers=2).eval()
    x = _image(9, 13)
    with torch.no_grad():
        ref = 0
        for k in range(4):  # the dihedral group as rotations, with and without a transpose
            for transpose in (False, True):
                t = x.transpose(-2, -1) if transpose else x
                y = torch.rot90(model(torch.rot90(t, k, (-2, -1))), -k, (-2, -1))
                ref = ref + (y.transpose(-2, -1) if transpose else y)
        ref = ref / 8
        out = Predictor(model, 2, use_self_ensemble=True)(x)
        assert (out - model(x)).abs().max() > 1e-4  # the model is not equivariant: ensembling matters
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
