"""Reading and writing the images ``infer`` upscales: 8- or 16-bit, grayscale, RGB or RGBA.

An ``Image`` keeps what the output must give back: ``rgb`` (HxWx3 float32 RGB in [0, 1], a gray
file replicated to three channels), ``alpha`` (HxW float32 or None), ``gray`` and ``bits`` (8 or
16).  ``to_array`` turns the upscaled colour (and alpha) back into the file's own layout and depth:
gray in -> gray out (the mean of the three channels), RGBA in -> RGBA out, 16-bit in -> 16-bit out.
PNG files are written to a temporary name, read back and renamed into place, so a reported file
is the complete file.
"""
import os
from dataclasses import dataclass

import cv2
import numpy as np

from ..evaluation.datasets import IMAGE_EXTENSIONS

__all__ = ['Image', 'ImageError', 'IMAGE_EXTENSIONS', 'read_image', 'to_array', 'write_png']


class ImageError(ValueError):
    """An image that cannot be read or written (one line naming the file)."""


@dataclass
class Image:
    rgb: np.ndarray
    alpha: np.ndarray = None
    gray: bool = False
    bits: int = 8

    @property
    def size(self):
        return self.rgb.shape[1], self.rgb.shape[0]


def read_image(path):
    """``Image`` of an 8/16-bit gray, gray+alpha, BGR or BGRA file (what OpenCV reads unchanged)."""
    path = os.fspath(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageError(f'{path}: cannot read: {err.strerror or err}') from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ImageError(f'{path}: not an image OpenCV can decode ({data.size} bytes)')
    if img.dtype == np.uint8:
        bits, top = 8, 255.0
    elif img.dtype == np.uint16:
        bits, top = 16, 65535.0
    else:
        raise ImageError(f'{path}: {img.dtype} pixels; expected 8- or 16-bit integers')
    img = img.astype(np.float32) / top
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageError(f'{path}: {channels} channels; expected gray, gray+alpha, RGB or RGBA')
    alpha = img[..., -1].copy() if channels in (2, 4) else None
    if channels <= 2:
        rgb = np.repeat(img[..., :1], 3, axis=2)
    else:
        rgb = img[..., 2::-1]  # BGR(A) -> RGB
    return Image(np.ascontiguousarray(rgb), alpha, gray=channels <= 2, bits=bits)


def to_array(image, rgb, alpha=None):
    """The upscaled ``rgb`` (HxWx3 float RGB) and ``alpha`` (HxW) as an array for ``cv2.imwrite`` in the
    layout and bit depth of the source ``image``."""
    top = 65535.0 if image.bits == 16 else 255.0
    dtype = np.uint16 if image.bits == 16 else np.uint8
    colour = rgb.mean(axis=2, keepdims=True) if image.gray else rgb[..., ::-1]
    if image.alpha is not None:
        if alpha is None:
            raise ValueError('the source image has an alpha channel: pass the upscaled alpha')
        colour = np.concatenate([colour, alpha[..., None]], axis=2)
    out = (np.clip(colour, 0, 1) * top).round().astype(dtype)
    return out[..., 0] if out.shape[2] == 1 else out


def write_png(path, array):
    """Write ``array`` as a PNG at ``path``: a temporary file, decoded back and compared, then renamed."""
    path = os.fspath(path)
    ok, encoded = cv2.imencode('.png', array)
    if not ok:
        raise ImageError(f'{path}: OpenCV could not encode a {array.dtype} {array.shape} image as PNG')
    tmp = f'{path}.tmp{os.getpid()}.png'
    try:
        with open(tmp, 'wb') as f:
            f.write(encoded.tobytes())
            f.flush()
            os.fsync(f.fileno())
        back = cv2.imread(tmp, cv2.IMREAD_UNCHANGED)
        if back is None or back.shape != array.shape or not np.array_equal(back, array):
            raise ImageError(f'{path}: the written PNG does not read back as the image')
        os.replace(tmp, path)
    except OSError as err:
        raise ImageError(f'{path}: cannot write: {err.strerror or err}') from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
