"""Finding benchmark images by convention, and loading HR/LR pairs the way BasicSR tests them.

Layouts recognised under ``root`` for a dataset ``name`` and scale ``s`` (first match wins):

- ``{name}/HR/{img}.png`` + ``{name}/LR_bicubic/X{s}/{img}x{s}.png`` (EDSR/SwinIR ``benchmark``
  layout, ../shared/data); also under ``root/benchmark/``, ``root/testsets/``, ``root/datasets/``;
- ``{name}/GTmod12/{img}.png`` + ``{name}/LRbicx{s}/{img}.png`` (BasicSR's ``datasets/Set5``);
- ``{name}_valid_HR/`` + ``{name}_valid_LR_bicubic/X{s}/{img}x{s}.png`` (DIV2K; ``DIV2K`` means the
  validation split, ``DIV2K_train`` the training one), also inside ``root/{name}/``;
- ``{name}/target/`` + ``{name}/input/`` at scale 1 (Restormer's deraining/deblurring test sets).

A dataset entry can also be a directory (any of the layouts above inside it) or a dict
``{'name', 'hr', 'lr', 'filename_tmpl'}`` (BasicSR's ``dataroot_gt``/``dataroot_lq``/
``filename_tmpl``).  When the LR folder is missing, LR images are generated from the mod-cropped
HR with BasicSR's MATLAB-compatible ``imresize`` and the dataset is marked ``lr_generated``.

Loading follows BasicSR's ``PairedImageDataset`` in the test phase, HR mod-cropped to the LR size
times the scale.  Two conventions (``metrics.CONVENTIONS``) differ only in how a file is read:

- ``'basicsr'`` (default): exactly BasicSR's ``imfrombytes(flag='color')`` (``cv2.IMREAD_COLOR``):
  a grayscale file such as Set14's ``bridge.png`` becomes three equal channels and is scored on Y
  like any colour image, 16-bit is OpenCV's 8-bit conversion, alpha is dropped;
- ``'matlab'``: the file read unchanged, a single-channel one replicated for the model and flagged
  so that the metrics score its gray level, 16-bit rounded to 8 bit.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .bicubic import generate_lr

IMAGE_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff', '.ppm', '.webp')
SEARCH_PREFIXES = ('', 'benchmark', 'testsets', 'datasets', 'test', 'Test')
LR_GENERATED_NOTE = 'LR generated from mod-cropped HR with BasicSR MATLAB-compatible imresize (bicubic)'


@dataclass
class Dataset:
    """One resolved test set: sorted HR files and, per HR file, its LR file (None = generate)."""
    name: str
    scale: int
    hr_dir: Path
    lr_dir: Path | None
    pairs: list = field(default_factory=list)  # [(hr_path, lr_path or None)]

    @property
    def lr_generated(self):
        return any(lr is None for _, lr in self.pairs)

    @property
    def lr_source(self):
        return LR_GENERATED_NOTE if self.lr_generated else f'files ({self.lr_dir})'

    def __len__(self):
        return len(self.pairs)


def _images(folder):
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _match_lr(hr_path, lr_dir, scale, filename_tmpl=None):
    """LR file of ``hr_path`` in ``lr_dir``: ``{stem}x{s}``, ``{stem}``, ``{stem}_x{s}``, any extension."""
    if lr_dir is None:
        return None
    stem = hr_path.stem
    stems = [filename_tmpl.format(stem)] if filename_tmpl else [f'{stem}x{scale}', stem, f'{stem}_x{scale}',
                                                               f'{stem}_LRBI_x{scale}']
    for candidate in stems:
        for ext in (hr_path.suffix, *IMAGE_EXTENSIONS):
            path = lr_dir / f'{candidate}{ext}'
            if path.is_file():
                return path
    return None


def _layouts(base, name, scale):
    """(hr_dir, lr_dir) candidates for ``name`` under ``base``, most specific first."""
    d = base / name
    yield d / 'HR', d / 'LR_bicubic' / f'X{scale}'
    yield d / 'HR', d / 'LR_bicubic' / f'x{scale}'
    yield d / 'GTmod12', d / f'LRbicx{scale}'
    yield d / 'GT', d / f'LRbicx{scale}'
    split = 'valid'
    stem = name
    if name.endswith(('_train', '_valid')):
        stem, split = name.rsplit('_', 1)
    for parent in (base, d):
        yield parent / f'{stem}_{split}_HR', parent / f'{stem}_{split}_LR_bicubic' / f'X{scale}'
    if scale == 1:
        yield d / 'target', d / 'input'
        yield d / 'gt', d / 'input'


def _layouts_in(directory, scale):
    """Layouts when the dataset directory itself is given."""
    yield from _layouts(directory.parent, directory.name, scale)
    if directory.name.endswith('_HR'):  # DIV2K_valid_HR given directly
        yield directory, directory.parent / f'{directory.name[:-3]}_LR_bicubic' / f'X{scale}'
    yield directory, None  # a bare folder of HR images: LR generated


def resolve_dataset(entry, scale, root=None, generate_lr=True):
    """Resolve a dataset name / directory / dict into a ``Dataset``.

    Raises FileNotFoundError with one line naming the paths looked at when nothing is found, and
    when LR files are missing but ``generate_lr`` is False."""
    if isinstance(entry, dict):
        name = entry.get('name') or Path(entry['hr']).parent.name
        hr_dir = Path(entry['hr'])
        lr_dir = Path(entry['lr']) if entry.get('lr') else None
        candidates = [(hr_dir, lr_dir)]
        tmpl = entry.get('filename_tmpl')
        if tmpl == '{}':
            tmpl = None  # BasicSR's default: same stem, let the matcher also try {stem}x{s}
    else:
        entry = os.fspath(entry)
        tmpl = None
        path = Path(entry)
        if path.is_dir():
            name = path.name
            candidates = list(_layouts_in(path, scale))
        else:
            name = entry
            bases = [Path(root)] if root is not None else []
            bases = [b / p if p else b for b in bases for p in SEARCH_PREFIXES]
            candidates = [c for b in bases for c in _layouts(b, name, scale)]
            if not candidates:
                raise FileNotFoundError(f"dataset {name!r}: no root given; pass root=DIR (--root DIR) or a path")
    for hr_dir, lr_dir in candidates:
        if hr_dir.is_dir() and _images(hr_dir):
            break
    else:
        looked = candidates[0][0]
        others = (f' (also tried GTmod12/, {name}_valid_HR/ and benchmark/, testsets/, datasets/ under {root})'
                  if len(candidates) > 2 else '')
        raise FileNotFoundError(f'dataset {name!r} (x{scale}) not found: no HR images in {looked}{others}')
    if lr_dir is not None and not lr_dir.is_dir():
        lr_dir = None
    dataset = Dataset(name=name, scale=scale, hr_dir=hr_dir, lr_dir=lr_dir)
    for hr_path in _images(hr_dir):
        dataset.pairs.append((hr_path, _match_lr(hr_path, lr_dir, scale, tmpl)))
    if dataset.lr_generated and not generate_lr:
        missing = next(hr for hr, lr in dataset.pairs if lr is None)
        raise FileNotFoundError(f'dataset {name!r}: no x{scale} LR image for {missing} in {lr_dir or "any LR folder"}'
                                ' (allow generate_lr to make it with MATLAB bicubic)')
    return dataset


def read_image(path, convention='basicsr'):
    """(8-bit BGR HxWx3 array, is_grayscale).  ``'basicsr'``: BasicSR's own ``imfrombytes`` with
    ``flag='color'`` (never flagged gray); ``'matlab'``: a single-channel file is replicated to
    three channels and flagged, alpha is dropped, 16-bit is rounded to 8 bit."""
    if convention == 'basicsr':
        from basicsr.utils import imfrombytes
        img = imfrombytes(Path(path).read_bytes(), flag='color', float32=False)
        if img is None:
            raise FileNotFoundError(f'cannot read image {path}')
        return img, False
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f'cannot read image {path}')
    if img.dtype != np.uint8:
        img = np.round(img.astype(np.float64) * (255. / np.iinfo(img.dtype).max)).astype(np.uint8)
    gray = img.ndim == 2 or img.shape[2] == 1
    if gray:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = img[..., :3]
    return img, gray


def bgr_to_rgb_float(img):
    """8-bit BGR -> float32 RGB in [0, 1] (the model input convention)."""
    return img[..., ::-1].astype(np.float32) / 255.


def load_pair(hr_path, lr_path, scale, convention='basicsr'):
    """``(lr, hr, gray)``: LR as float32 RGB HWC in [0, 1] (the model input), HR as 8-bit BGR HWC
    (the metric reference) mod-cropped to ``scale`` (and to LR size x scale, as BasicSR's
    ``PairedImageDataset`` does for benchmark sets), ``gray`` when the HR file is single-channel
    and ``convention`` is ``'matlab'`` (score its gray level).  The LR is generated with MATLAB
    bicubic when ``lr_path`` is None."""
    hr, gray = read_image(hr_path, convention)
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    hr = hr[:h, :w]
    if lr_path is None:
        lr = generate_lr(bgr_to_rgb_float(hr), scale)
    else:
        lr_bgr, _ = read_image(lr_path, convention)
        lh, lw = lr_bgr.shape[:2]
        if lh * scale > h or lw * scale > w:
            raise ValueError(f'{lr_path} is {lw}x{lh}, too large for x{scale} of {hr_path} ({w}x{h} after mod-crop): '
                             'wrong scale or wrong LR folder?')
        hr = hr[:lh * scale, :lw * scale]
        lr = bgr_to_rgb_float(lr_bgr)
    return lr, np.ascontiguousarray(hr), gray


def to_tensor(img, device='cpu'):
    """HWC float array -> 1xCxHxW tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(device)
