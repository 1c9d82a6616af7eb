"""Window partition/merge, relative-position indices and shifted-window masks (Swin style)."""
import torch
import torch.nn.functional as F


def pad_to_multiple(x, multiple):
    """Pad (..., H, W) at the bottom/right to multiples of ``multiple``: reflect, or replicate
    where the image is too small to reflect.  Callers crop their output back."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if (torch.compiler.is_compiling() and h > multiple and w > multiple) or pad_h or pad_w:
        # compiling: pad even by zero (tested first: no guard on the residue), so a dynamic-size
        # graph does not branch, and recompile, on whether a size happens to be a multiple
        mode = 'reflect' if h > multiple and w > multiple or pad_h < h and pad_w < w else 'replicate'
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x


def window_partition(x, window_size):
    """(B, H, W, C) -> (B * nW, window_size * window_size, C); H, W multiples of window_size."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows, window_size, h, w):
    """(B * nW, window_size * window_size, C) -> (B, H, W, C); inverse of window_partition."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def relative_position_index(window_size):
    """(ws*ws, ws*ws) long tensor indexing a ((2ws-1)^2, heads) bias table, as in Swin."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    coords = coords.flatten(1)  # 2, N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N, N, 2
    rel = rel + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def shifted_window_mask(h, w, window_size, shift_size, device=None, neg=-100.0):
    """(nW, N, N) additive mask for a cyclic shift by ``shift_size``: tokens that come from
    different image regions after the roll get ``neg`` (Swin's -100), others 0."""
    img_mask = torch.zeros((1, h, w, 1), device=device)
    slices = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    cnt = 0
    for hs in slices:
        for ws in slices:
            img_mask[:, hs, ws, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, window_size).squeeze(-1)  # nW, N
    mask = mask_windows[:, None, :] - mask_windows[:, :, None]
    return mask.masked_fill(mask != 0, neg).masked_fill(mask == 0, 0.0)


# ------------------------------------------------------------------------------------------------
# relative-position bias as a strided view (keys in reversed order)
# ------------------------------------------------------------------------------------------------
def hankel_view(table, window_size, y0=0, y1=None):
    """``bias[h, yi, xi, yj, xj] = table[h, yi + yj, xi + xj]`` for query rows ``y0 <= yi < y1``
    of a ``window_size`` window, as a strided view of ``table`` ((heads, 2ws-1, 2ws-1), contiguous):
    no copy.  A relative-position bias indexed by (key - query) offsets is exactly this view of
    its table flipped in both offsets when the keys of each window are taken in reversed order."""
    ws, side = window_size, table.shape[-1]
    y1 = ws if y1 is None else y1
    return table.as_strided((table.shape[0], y1 - y0, ws, ws, ws), (side * side, side, 1, side, 1),
                            table.storage_offset() + y0 * side)


def hankel_grad_by_x_shape(heads, window_size):
    return (heads, window_size, window_size, 2 * window_size - 1)


def hankel_grad_by_x_(by_x, grad_rows, window_size, y0):
    """First half of ``hankel_table_grad``, for the query rows ``y0 ...`` that ``grad_rows``
    ((heads, rows, N) of the full view's gradient, whole window rows) holds: adds their sums over
    ``xq + xk`` into ``by_x`` ((heads, ws, ws, 2ws-1): query row, key row, x offset)."""
    ws = window_size
    heads, ny = grad_rows.shape[0], grad_rows.shape[1] // ws
    grad_rows = grad_rows.reshape(heads, ny, ws, ws, ws)  # (h, yq, xq, yk, xk)
    target = by_x[:, y0:y0 + ny]
    for xq in range(ws):
        target[..., xq:xq + ws] += grad_rows[:, :, xq]
    return by_x


def hankel_grad_from_by_x(by_x, window_size):
    """Second half: sums over ``yq + yk`` -> the (heads, 2ws-1, 2ws-1) table gradient."""
    ws = window_size
    out = by_x.new_zeros(by_x.shape[0], 2 * ws - 1, 2 * ws - 1)
    for yq in range(ws):
        out[:, yq:yq + ws] += by_x[:, yq]
    return out


def hankel_table_grad(grad, window_size):
    """The gradient of ``hankel_view``'s table from ``grad`` (heads, N, N) of the full view: each
    table entry gets the sum of its anti-diagonal (every (query, key) pair it was copied to)."""
    by_x = grad.new_zeros(hankel_grad_by_x_shape(grad.shape[-3], window_size))
    hankel_grad_by_x_(by_x, grad.reshape(grad.shape[-3], -1, grad.shape[-1]), window_size, 0)
    return hankel_grad_from_by_x(by_x, window_size)


class _HankelGather(torch.autograd.Function):
    """Dense copy of ``hankel_view`` with the table's gradient by anti-diagonal sums (a strided
    copy and 2 x ws adds, where an ``index_select`` gather and its ``scatter_add`` are ~5x slower)."""

    @staticmethod
    def forward(ctx, table, window_size):
        ctx.window_size = window_size
        n = window_size * window_size
        out = table.new_empty(table.shape[0], window_size, window_size, window_size, window_size)
        return out.copy_(hankel_view(table.contiguous(), window_size)).view(1, table.shape[0], n, n)

    @staticmethod
    def backward(ctx, grad):
        return hankel_table_grad(grad[0], ctx.window_size), None


class HankelBias:
    """The additive bias ``hankel_view(table, window_size)`` as (1, heads, N, N), not yet copied.

    The ``chunked`` attention backend takes it as is (each backward chunk copies its own rows from
    the table; neither the bias nor its gradient is kept); ``materialize()`` gives the dense bias to
    any other backend.  ``table``: (heads, 2ws-1, 2ws-1); ``dtype``: the dtype of the bias."""

    __slots__ = ('table', 'window_size', 'dtype')

    def __init__(self, table, window_size, dtype=None):
        self.table, self.window_size = table, window_size
        self.dtype = table.dtype if dtype is None else dtype

    @property
    def shape(self):
        n = self.window_size * self.window_size
        return (1, self.table.shape[0], n, n)

    def materialize(self):
        return _HankelGather.apply(self.table, self.window_size).to(self.dtype)

    def stand_in(self):
        """A 1-element tensor expanded to the bias's shape, dtype and grad requirement (for checks)."""
        one = self.table.new_zeros(1, dtype=self.dtype)
        return one.requires_grad_(self.table.requires_grad).expand(self.shape)
