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
