"""Upscaling a user's own images with a trained network: ``python tools/infer.py`` (``cli/infer.py``).

- ``models.load_model``: the network and its scale from a checkpoint (detected, or ``--arch``);
- ``images``: 8/16-bit gray, RGB and RGBA files in, the same layout and depth out (PNG);
- ``Upscaler``: the network on a device in fp32 / bf16 / fp16, run through
  ``evaluation.inference.Predictor`` (padding to the window multiple, overlapping tiles); the alpha
  channel is upscaled apart with bicubic (OpenCV ``INTER_CUBIC``), never through the network.
"""
import cv2
import numpy as np
import torch

from ..evaluation.inference import Predictor
from .images import IMAGE_EXTENSIONS, Image, ImageError, read_image, to_array, write_png
from .models import Loaded, detect_arch, load_model

__all__ = ['Upscaler', 'PRECISIONS', 'Loaded', 'load_model', 'detect_arch', 'Image', 'ImageError',
           'IMAGE_EXTENSIONS', 'read_image', 'to_array', 'write_png']

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


class Upscaler:
    """``loaded.model`` on ``device`` in ``precision``; ``upscaler(image) -> array`` for ``write_png``.

    ``tile``: LR tile size (None: the whole image at once), ``tile_overlap``: LR pixels shared by
    neighbouring tiles (``evaluation.inference.tiled_forward`` blends them); ``pad_multiple``: H and W
    are reflect-padded to a multiple of it (default: ``loaded.pad_multiple``, else the network's own
    ``window_size`` attribute, else none)."""

    def __init__(self, loaded, device='cpu', precision='fp32', tile=None, tile_overlap=32, pad_multiple=None):
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
        self.scale, self.device, self.dtype = loaded.scale, torch.device(device), PRECISIONS[precision]
        self.channels = loaded.channels
        self.precision = precision
        model = loaded.model.to(self.device, self.dtype).eval()
        self.predictor = Predictor(model, loaded.scale, tile=tile, tile_overlap=tile_overlap,
                                   pad_multiple=pad_multiple or loaded.pad_multiple)

    def check(self):
        """Run the network once on a small input: an unsupported precision or device is one error line
        before any image is read (e.g. fp16 convolutions on a CPU build without them)."""
        side = max(8, self.predictor.multiple)
        x = torch.rand(1, self.channels, side, side, device=self.device, dtype=self.dtype)
        try:
            out = self.predictor(x)
        except (RuntimeError, NotImplementedError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f'the network does not run in {self.precision} on {self.device.type} ({first[:200]}); '
                             'use another --precision or --device') from None
        if out.shape[-2:] != (side * self.scale, side * self.scale):
            raise ValueError(f'the network turned a {side}x{side} input into {out.shape[-1]}x{out.shape[-2]}, '
                             f'not x{self.scale}')

    @torch.no_grad()
    def rgb(self, rgb):
        """HxWx3 float RGB in [0, 1] -> (H*s)x(W*s)x3 float32 (not clamped).  A gray network gets the
        channel mean (a gray file's own level) and its output is repeated to three channels."""
        if self.channels == 1:
            rgb = rgb.mean(axis=2, keepdims=True)
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(self.device, self.dtype)
        sr = self.predictor(x)[0].float().cpu().numpy().transpose(1, 2, 0)
        return np.repeat(sr, 3, axis=2) if sr.shape[2] == 1 else sr

    def alpha(self, alpha):
        """HxW alpha -> (H*s)x(W*s), bicubic, clipped to [0, 1]."""
        h, w = alpha.shape
        return np.clip(cv2.resize(alpha, (w * self.scale, h * self.scale), interpolation=cv2.INTER_CUBIC), 0, 1)

    def __call__(self, image):
        alpha = self.alpha(image.alpha) if image.alpha is not None else None
        return to_array(image, self.rgb(image.rgb), alpha)
