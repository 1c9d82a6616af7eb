"""MATLAB-compatible bicubic resizing: the ``bicubic`` baseline model and on-the-fly LR generation.

Every SR paper's "Bicubic" row is MATLAB ``imresize(lr, s, 'bicubic')`` of the MATLAB-made LR
(Keys cubic, a = -0.5, symmetric border padding, anti-aliasing only when shrinking).  BasicSR's
``basicsr.utils.matlab_functions`` reproduces it; its ``imresize`` loops over output rows in
Python, which is fine for making an LR image once but slow as a model.  ``MatlabBicubic`` reuses
BasicSR's kernel weights (``calculate_weights_indices``) and folds them, with the symmetric
border, into one dense resampling matrix per axis, so the resize is two matmuls:
``out = A_h @ img @ A_w^T`` (same numbers as ``imresize``, batched, any device, differentiable).
"""
import math

import numpy as np
import torch
from torch import nn

from basicsr.utils.matlab_functions import calculate_weights_indices, imresize


def resampling_matrix(in_length, out_length, scale, antialiasing=True):
    """(out_length, in_length) float64 matrix of MATLAB bicubic resampling along one axis.

    Row ``i`` holds the cubic weights of output pixel ``i``; taps that fall outside the image are
    mirrored back in (MATLAB's symmetric padding, the edge pixel repeated), exactly as BasicSR's
    ``imresize`` pads its input."""
    weights, indices, sym_len_s, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4,
                                                               antialiasing)
    pos = indices.long() - sym_len_s + 1  # 1-based positions in the unpadded signal (may be <1 or >in)
    pos = torch.where(pos < 1, 1 - pos, pos)
    pos = torch.where(pos > in_length, 2 * in_length + 1 - pos, pos)
    if pos.min() < 1 or pos.max() > in_length:  # a kernel wider than the image: not a real use case
        raise ValueError(f'cannot resize a length-{in_length} axis by {scale}: kernel wider than the image')
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    matrix.scatter_add_(1, pos - 1, weights.double())
    return matrix


class MatlabBicubic(nn.Module):
    """Upscale (or downscale) an NCHW batch by ``scale`` with MATLAB ``imresize`` bicubic.

    The ``bicubic`` pseudo-model of the leaderboard: no parameters, output size
    ``ceil(H * scale) x ceil(W * scale)``, values not clamped (the evaluator rounds to uint8 as for
    any model)."""

    def __init__(self, scale=4, antialiasing=True):
        super().__init__()
        self.scale = scale
        self.antialiasing = antialiasing
        self._cache = {}

    def _matrix(self, length, device, dtype):
        key = (length, device, dtype)
        if key not in self._cache:
            out_length = math.ceil(length * self.scale)
            self._cache[key] = resampling_matrix(length, out_length, self.scale, self.antialiasing).to(device, dtype)
        return self._cache[key]

    def forward(self, x):
        if self.scale == 1:
            return x
        a_h = self._matrix(x.shape[-2], x.device, x.dtype)
        a_w = self._matrix(x.shape[-1], x.device, x.dtype)
        return a_h @ x @ a_w.transpose(0, 1)

    def extra_repr(self):
        return f'scale={self.scale}'


def generate_lr(hr, scale):
    """MATLAB-bicubic LR of a mod-cropped HR image (HWC float32 in [0, 1]), rounded to 8 bit like
    MATLAB's ``imresize`` of a uint8 image; uses BasicSR's ``imresize`` itself."""
    lr = imresize(hr, 1 / scale)
    return (np.clip(lr, 0, 1) * 255).round().astype(np.float32) / 255
