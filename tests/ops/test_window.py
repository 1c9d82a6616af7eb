"""Window helpers against brute-force constructions: partition layout and round trip, the
relative-position index, and the shifted-window mask (no token attends across the wrapped edge)."""
import itertools

import pytest
import torch

from agile_ir_plugin.ops.window import (relative_position_index, shifted_window_mask, window_partition,
                                        window_reverse)


@pytest.mark.parametrize('b,h,w,c,ws', [(2, 8, 12, 3, 4), (1, 16, 8, 5, 8), (3, 6, 6, 1, 3)])
def test_partition_layout_and_round_trip(b, h, w, c, ws):
    x = torch.randn(b, h, w, c)
    windows = window_partition(x, ws)
    nwh, nww = h // ws, w // ws
    assert windows.shape == (b * nwh * nww, ws * ws, c)
    for bi, wy, wx, t in itertools.product(range(b), range(nwh), range(nww), range(ws * ws)):
        window = (bi * nwh + wy) * nww + wx  # windows in raster order, batch-major
        y, xx = wy * ws + t // ws, wx * ws + t % ws  # tokens in raster order inside a window
        assert torch.equal(windows[window, t], x[bi, y, xx])
    assert torch.equal(window_reverse(windows, ws, h, w), x)


def test_reverse_then_partition_round_trip():
    windows = torch.randn(2 * 6, 16, 7)
    assert torch.equal(window_partition(window_reverse(windows, 4, 8, 12), 4), windows)


@pytest.mark.parametrize('ws', [1, 2, 3, 8])
def test_relative_position_index_matches_brute_force(ws):
    idx = relative_position_index(ws)
    n = ws * ws
    assert idx.shape == (n, n) and idx.dtype == torch.long
    brute = torch.empty(n, n, dtype=torch.long)
    for a, b in itertools.product(range(n), repeat=2):
        dy, dx = a // ws - b // ws, a % ws - b % ws
        brute[a, b] = (dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1)
    assert torch.equal(idx, brute)
    # one table entry per relative offset: all (2ws-1)^2 offsets occur, and only those
    assert sorted(idx.unique().tolist()) == list(range((2 * ws - 1) ** 2))


def _brute_force_shift_mask(h, w, ws, shift):
    """Roll the coordinate grid like the features, then allow a pair of tokens in one window iff
    they were neighbours in the *unrolled* image (row and column distance < ws, no wrap-around)."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    grid = torch.stack([rows, cols], -1).roll(shifts=(-shift, -shift), dims=(0, 1))  # original coords
    win = window_partition(grid.unsqueeze(0), ws)  # nW, N, 2
    dist = (win[:, :, None, :] - win[:, None, :, :]).abs()  # nW, N, N, 2
    allowed = (dist < ws).all(-1)
    return torch.where(allowed, 0.0, -100.0)


@pytest.mark.parametrize('h,w,ws,shift', [(16, 16, 8, 4), (16, 24, 8, 4), (24, 16, 4, 2), (12, 8, 4, 1),
                                          (8, 12, 4, 3), (32, 16, 8, 4)])
def test_shift_mask_matches_brute_force(h, w, ws, shift):
    mask = shifted_window_mask(h, w, ws, shift)
    assert mask.shape == ((h // ws) * (w // ws), ws * ws, ws * ws)
    assert torch.equal(mask, _brute_force_shift_mask(h, w, ws, shift))


def test_shift_mask_blocks_exactly_the_wrapped_pairs():
    h = w = 16
    ws, shift = 8, 4
    mask = shifted_window_mask(h, w, ws, shift)
    # interior windows see only unwrapped tokens: nothing masked
    assert (mask[0] == 0).all()
    # the bottom-right window mixes 4 regions of 16 tokens: each token may attend to its 16
    assert ((mask[-1] == 0).sum(-1) == 16).all()
    # the top-left pixel, rolled next to the bottom-right one, does not attend across the wrapped edge
    corner = window_partition(torch.arange(h * w).view(1, h, w, 1).roll((-shift, -shift), (1, 2)), ws)[-1, :, 0]
    a = corner.tolist().index(0)  # original pixel (0, 0)
    b = corner.tolist().index(15 * w + 15)  # original pixel (15, 15): its window neighbour after the roll
    assert mask[-1, a, b] == -100.0 and mask[-1, a, a] == 0.0
    assert torch.equal(mask, mask.transpose(1, 2))  # symmetric: the relation is mutual


# ------------------------------------------------------------------------------------------------
# HankelBias: a relative-position bias as a strided view of its table (keys in reversed order)
# ------------------------------------------------------------------------------------------------
def _official_bias(table, ws):
    """(heads, N, N) bias indexed by (key - query) offsets (ESC's official order), by brute force."""
    heads, n = table.shape[0], ws * ws
    side = 2 * ws - 1
    out = torch.empty(heads, n, n, dtype=table.dtype)
    for i in range(n):
        for j in range(n):
            dy, dx = j // ws - i // ws, j % ws - i % ws
            out[:, i, j] = table[:, (dy + ws - 1) * side + dx + ws - 1]
    return out


@pytest.mark.parametrize('ws', [3, 8])
def test_hankel_view_is_the_official_bias_with_reversed_keys(ws):
    from agile_ir_plugin.ops.window import hankel_view
    heads, side, n = 3, 2 * ws - 1, ws * ws
    table = torch.randn(heads, side * side, dtype=torch.float64)
    flipped = table.view(heads, side, side).flip(1, 2).contiguous()
    view = hankel_view(flipped, ws).reshape(heads, n, n)
    assert torch.equal(view, _official_bias(table, ws).flip(-1))  # key j <-> N - 1 - j
    rows = hankel_view(flipped, ws, 1, 3).reshape(heads, 2 * ws, n)  # query rows y = 1, 2
    assert torch.equal(rows, view[:, ws:3 * ws])


@pytest.mark.parametrize('ws', [3, 8])
def test_hankel_gather_gradient_equals_the_index_gather_gradient(ws):
    """The anti-diagonal sums equal autograd's gradient of an index_select gather (float64)."""
    from agile_ir_plugin.ops.window import HankelBias
    heads, side, n = 2, 2 * ws - 1, ws * ws
    table = torch.randn(heads, side, side, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(1, heads, n, n, dtype=torch.float64)
    dense = HankelBias(table, ws).materialize()
    (got,) = torch.autograd.grad(dense, table, grad)
    index = (torch.arange(ws)[:, None, None, None] + torch.arange(ws)[None, None, :, None]) * side \
        + torch.arange(ws)[None, :, None, None] + torch.arange(ws)[None, None, None, :]  # (yi, xi, yj, xj)
    ref_dense = table.view(heads, -1).index_select(1, index.reshape(-1)).view(1, heads, n, n)
    (ref,) = torch.autograd.grad(ref_dense, table, grad)
    assert torch.equal(dense, ref_dense)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
