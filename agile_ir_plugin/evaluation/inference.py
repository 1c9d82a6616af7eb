"""Running any SR ``nn.Module`` on an image of any size: padding, tiling, self-ensemble.

- ``pad_multiple_of(model)``: window-based transformers need H and W divisible by their window
  (SwinIR, HAT, ESC ...): the ``pad_multiple`` or ``window_size`` attribute (an int or a tuple,
  whose lcm is used).
- ``padded_forward``: reflect-pad the LR input up to that multiple (as SwinIR's and HAT's test
  scripts do), run, crop the output back to ``scale`` x the input size.
- ``tiled_forward``: overlapping LR tiles, each run through ``fn``; tiles are blended with
  weights that are a partition of unity along each axis: inside the overlap of two neighbours
  the weight ramps linearly from one tile to the other over ``blend`` LR pixels centred on the
  overlap's middle (``blend=0``: hard cut at the middle).  Each output pixel therefore comes
  only from tiles in which it lies at least ``(overlap - blend) / 2`` LR pixels inside, so for a
  model whose receptive-field radius is at most that margin the tiled output equals the
  whole-image output up to float rounding (no seams); memory is that of one tile plus the output.
- ``self_ensemble``: the x8 geometric self-ensemble of EDSR (Lim et al., 2017): average of
  ``T^-1(fn(T(x)))`` over the 8 flips/transposes ``T`` of the dihedral group.
"""
import math

import torch

from ..ops.window import pad_to_multiple


def pad_multiple_of(model, override=None):
    """The multiple H and W must have for ``model`` (1 when it says nothing)."""
    if override:
        return int(override)
    for attr in ('pad_multiple', 'window_size'):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
            return math.lcm(*value)
    return 1


def padded_forward(model, x, scale, multiple=1):
    """``model(x)`` with ``x`` padded at the bottom/right to a multiple of ``multiple`` (reflect,
    replicate where the image is too small to reflect), output cropped to ``scale`` x input size."""
    h, w = x.shape[-2:]
    x = pad_to_multiple(x, multiple)
    out = model(x)
    expected = (x.shape[-2] * scale, x.shape[-1] * scale)
    if tuple(out.shape[-2:]) != expected:
        raise ValueError(f'the model turned a {x.shape[-1]}x{x.shape[-2]} input into {out.shape[-1]}x{out.shape[-2]}, '
                         f'not x{scale} ({expected[1]}x{expected[0]}): wrong --scale for this checkpoint?')
    return out[..., :h * scale, :w * scale]


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` overlap."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f'tile_overlap ({overlap}) must be smaller than the tile size ({tile})')
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _axis_weights(starts, tile, length, blend, scale):
    """Per-tile 1-D blending weights in output pixels, a partition of unity along the axis."""
    centres = torch.arange(tile * scale, dtype=torch.float64) + 0.5  # pixel centres, tile-local
    weights = []
    for i, start in enumerate(starts):
        w = torch.ones(tile * scale, dtype=torch.float64)
        end = min(start + tile, length)
        # overlap with the left neighbour [start, prev_end): ramp up around its middle;
        # overlap with the right one [next_start, end): ramp down around its middle
        prev_end = starts[i - 1] + tile if i > 0 else None
        next_start = starts[i + 1] if i + 1 < len(starts) else None
        for side, other in ((1, prev_end), (-1, next_start)):
            if other is None:
                continue
            lo, hi = (start, other) if side == 1 else (other, end)
            middle = (lo + hi) / 2 * scale - start * scale
            if blend > 0:
                ramp = ((centres - middle) * side / (blend * scale) + 0.5).clamp(0, 1)
            else:
                ramp = ((centres - middle) * side > 0).double() + 0.5 * (centres == middle).double()
            w = w * ramp
        weights.append(w)
    return weights


def tiled_forward(fn, x, scale, tile, overlap=32, blend=None):
    """Run ``fn`` (LR NCHW -> SR NCHW) on overlapping ``tile`` x ``tile`` LR tiles of ``x`` and
    blend them; ``blend`` defaults to half the overlap (see the module docstring)."""
    if not tile:
        return fn(x)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    h, w = x.shape[-2:]
    if h <= th and w <= tw:
        return fn(x)
    th, tw = min(th, h), min(tw, w)
    blend = overlap // 2 if blend is None else blend
    if blend > overlap:
        raise ValueError(f'tile blend ({blend}) cannot exceed the tile overlap ({overlap})')
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    wy = _axis_weights(ys, th, h, blend, scale)
    wx = _axis_weights(xs, tw, w, blend, scale)
    out = weight_sum = None
    for i, y0 in enumerate(ys):
        for j, x0 in enumerate(xs):
            sr = fn(x[..., y0:y0 + th, x0:x0 + tw])
            if out is None:
                out = sr.new_zeros(*sr.shape[:-2], h * scale, w * scale)
                weight_sum = sr.new_zeros(h * scale, w * scale)
            weight = (wy[i][:, None] * wx[j][None, :]).to(sr)
            ys_, xs_ = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            out[..., ys_, xs_] += sr * weight
            weight_sum[ys_, xs_] += weight
    return out / weight_sum


def _transform(x, k):
    if k & 4:
        x = x.transpose(-2, -1)
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    return x


def _inverse(x, k):
    if k & 2:
        x = x.flip(-2)
    if k & 1:
        x = x.flip(-1)
    if k & 4:
        x = x.transpose(-2, -1)
    return x


def self_ensemble(fn, x):
    """x8 geometric self-ensemble: mean over the 8 dihedral transforms T of T^-1(fn(T(x)))."""
    out = None
    for k in range(8):
        y = _inverse(fn(_transform(x, k)), k)
        out = y if out is None else out + y
    return out / 8


class Predictor:
    """``model`` wrapped as LR -> SR with padding, optional tiling and self-ensemble (no grad)."""

    def __init__(self, model, scale, tile=None, tile_overlap=32, tile_blend=None, pad_multiple=None,
                 use_self_ensemble=False):
        self.model = model
        self.scale = scale
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.tile_blend = tile_blend
        self.multiple = pad_multiple_of(model, pad_multiple)
        self.use_self_ensemble = use_self_ensemble

    def _padded(self, x):
        return padded_forward(self.model, x, self.scale, self.multiple)

    def _tiled(self, x):
        return tiled_forward(self._padded, x, self.scale, self.tile, self.tile_overlap, self.tile_blend)

    @torch.no_grad()
    def __call__(self, x):
        if self.use_self_ensemble:
            return self_ensemble(self._tiled, x)
        return self._tiled(x)
