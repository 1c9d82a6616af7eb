"""ARAD_1K-style spectral-reconstruction data: RGB images paired with hyperspectral ``.mat`` cubes.

The NTIRE 2022 spectral-recovery challenge (ARAD_1K) ships 482x512x31 cubes as MATLAB v7.3 files
(HDF5, variable ``cube``) and the matching RGB renderings as ``.jpg`` of the same name; MST++
(Cai et al., CVPRW 2022) trains on 128x128 patches taken on a stride-8 grid of every image, with
random 90-degree rotations and flips, and validates on full images.  This dataset reproduces that
pipeline inside BasicSR:

- cubes: MATLAB v7.3 / plain HDF5 files (read with ``h5py``; the array is stored transposed, so it
  reads as (C, W, H)) or classic MATLAB v5 files (``scipy.io``; the array reads as (H, W, C)); both
  come out as float32 (C, H, W).  HDF5 patches are read by slicing, so nothing needs to fit in
  memory unless ``cache_data`` asks for it (MST++ itself keeps the whole set in memory);
- RGB: read with OpenCV, BGR to RGB (``bgr2rgb``), float32 (3, H, W), normalised per image to
  [0, 1] by its own min and max as in MST++ (``rgb_norm: minmax``) or divided by 255
  (``rgb_norm: '255'``);
- ``phase: train``: item ``i`` is patch ``i`` of the grid (``gt_size`` 128, ``stride`` 8; 2205
  patches per 482x512 image), randomly rotated/flipped when ``use_flip``/``use_rot``;
  otherwise: whole images (score them with ``crop_border: 128`` in the spectral metrics).

Options (``datasets.<phase>``): ``dataroot_gt`` (folder of cubes), ``dataroot_lq`` (folder of RGB
images), ``meta_info_file`` (optional list of names, one per line, e.g. ARAD's
``split_txt/train_list.txt``; without it every cube of ``dataroot_gt`` is used), ``mat_key``
(``cube``), ``gt_size``, ``stride``, ``use_flip``, ``use_rot``, ``bgr2rgb``, ``rgb_norm``,
``cache_data``.  Items: ``{'lq': (3, H, W), 'gt': (C, H, W), 'lq_path', 'gt_path'}``.
"""
import bisect
import os
import random

import cv2
import numpy as np
import torch
from torch.utils import data
from basicsr.utils.registry import DATASET_REGISTRY

from ..registry import register

__all__ = ['HSIDataset', 'mat_format', 'mat_cube_shape', 'read_mat_cube', 'read_rgb']

RGB_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')
_HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'


# ------------------------------------------------------------------------------------- file readers
def mat_format(path):
    """'hdf5' for MATLAB v7.3 / plain HDF5 files (signature at byte 0 or after MATLAB's 512-byte
    header), else 'v5' (classic MATLAB, read by scipy.io)."""
    with open(path, 'rb') as f:
        head = f.read(520)
    return 'hdf5' if head[:8] == _HDF5_SIGNATURE or head[512:520] == _HDF5_SIGNATURE else 'v5'


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('reading MATLAB v7.3 (HDF5) .mat cubes needs h5py: pip install h5py') from err
    return h5py


def _missing_key(path, key, available):
    return ValueError(f"{path}: no variable '{key}' in this .mat file (it has {sorted(available)}); "
                      f'set mat_key to the one holding the cube')


def mat_cube_shape(path, key='cube'):
    """(C, H, W) of the cube ``key`` in ``path`` without reading its values."""
    if mat_format(path) == 'hdf5':
        with _h5py().File(path, 'r') as f:
            if key not in f:
                raise _missing_key(path, key, list(f.keys()))
            shape = f[key].shape
        if len(shape) != 3:
            raise ValueError(f"{path}: '{key}' has shape {shape}, expected a 3-D spectral cube")
        c, w, h = shape  # MATLAB's (H, W, C), stored column-major
        return c, h, w
    import scipy.io
    variables = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    if key not in variables:
        raise _missing_key(path, key, list(variables))
    shape = variables[key]
    if len(shape) != 3:
        raise ValueError(f"{path}: '{key}' has shape {shape}, expected a 3-D (H, W, C) spectral cube")
    h, w, c = shape
    return c, h, w


def read_mat_cube(path, key='cube', window=None):
    """float32 cube (C, H, W) from ``path``; ``window=(top, left, height, width)`` reads only that
    region (HDF5 files are sliced on disk, classic ones are read whole and cropped)."""
    if mat_format(path) == 'hdf5':
        with _h5py().File(path, 'r') as f:
            if key not in f:
                raise _missing_key(path, key, list(f.keys()))
            ds = f[key]
            if window is None:
                cube = ds[()]
            else:
                top, left, height, width = window
                cube = ds[:, left:left + width, top:top + height]
        cube = np.transpose(cube, (0, 2, 1))
    else:
        import scipy.io
        mat = scipy.io.loadmat(path, variable_names=[key])
        if key not in mat:
            raise _missing_key(path, key, [k for k in mat if not k.startswith('__')])
        cube = np.transpose(mat[key], (2, 0, 1))
        if window is not None:
            top, left, height, width = window
            cube = cube[:, top:top + height, left:left + width]
    return np.ascontiguousarray(cube, dtype=np.float32)


def read_rgb(path, bgr2rgb=True, rgb_norm='minmax'):
    """float32 (3, H, W) image: MST++'s per-image min-max normalisation, or /255 (``rgb_norm='255'``)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'{path}: OpenCV cannot read this image')
    if bgr2rgb:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = img.astype(np.float32)
    if str(rgb_norm) == 'minmax':
        low, high = img.min(), img.max()
        img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    elif str(rgb_norm) == '255':
        img = img / 255.0
    else:
        raise ValueError(f"rgb_norm must be 'minmax' (MST++) or '255', got {rgb_norm!r}")
    return np.ascontiguousarray(img.transpose(2, 0, 1))


# ------------------------------------------------------------------------------------- pairing
def _list_folder(folder, extensions, role, option):
    if not folder or not os.path.isdir(folder):
        raise FileNotFoundError(f'HSIDataset: {option} folder not found: {folder!r} (the folder of {role})')
    found = {}
    for entry in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(entry)
        if ext.lower() in extensions:
            if stem in found:
                raise ValueError(f'HSIDataset: {stem!r} has two {role} in {folder}: '
                                 f'{os.path.basename(found[stem])} and {entry}; keep one')
            found[stem] = os.path.join(folder, entry)
    return found


def _read_names(meta_info_file):
    if not os.path.isfile(meta_info_file):
        raise FileNotFoundError(f'HSIDataset: meta_info_file not found: {meta_info_file!r}')
    names = []
    with open(meta_info_file) as f:
        for line in f:
            if line.strip():
                name = line.split()[0]
                stem, ext = os.path.splitext(name)
                names.append(stem if ext.lower() in ('.mat', ) + RGB_EXTENSIONS else name)
    return names


def pair_cubes_with_images(gt_folder, lq_folder, meta_info_file=None):
    """[(name, cube path, RGB path)] matched by file name; one clear error when anything is unpaired."""
    cubes = _list_folder(gt_folder, ('.mat', ), '.mat cubes', 'dataroot_gt')
    images = _list_folder(lq_folder, RGB_EXTENSIONS, 'RGB images', 'dataroot_lq')
    if meta_info_file:
        names = _read_names(meta_info_file)
    else:
        names = sorted(cubes)
        extra = sorted(set(images) - set(cubes))
        if extra:
            raise ValueError(f'HSIDataset: {len(extra)} RGB images in {lq_folder} have no .mat cube in {gt_folder} '
                             f'(e.g. {extra[:3]}); remove them or list the pairs in meta_info_file')
    if not names:
        raise ValueError(f'HSIDataset: no .mat cubes found in {gt_folder}')
    no_cube = [n for n in names if n not in cubes]
    if no_cube:
        raise ValueError(f'HSIDataset: {len(no_cube)} names have no .mat cube in {gt_folder} (e.g. {no_cube[:3]})')
    no_image = [n for n in names if n not in images]
    if no_image:
        raise ValueError(f'HSIDataset: {len(no_image)} cubes have no RGB image ({"/".join(RGB_EXTENSIONS)}) '
                         f'of the same name in {lq_folder} (e.g. {no_image[:3]})')
    return [(n, cubes[n], images[n]) for n in names]


# ------------------------------------------------------------------------------------- dataset
def _augment(arrays, rot_times, flip_w, flip_h):
    """Same random rotation/flips on every (C, H, W) array (MST++'s order: rotate, flip W, flip H)."""
    out = []
    for a in arrays:
        a = np.rot90(a, rot_times, axes=(1, 2))
        if flip_w:
            a = a[:, :, ::-1]
        if flip_h:
            a = a[:, ::-1, :]
        out.append(np.ascontiguousarray(a))
    return out


@register(DATASET_REGISTRY)
class HSIDataset(data.Dataset):
    """RGB -> hyperspectral pairs (ARAD_1K layout); see the module docstring for the options."""

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.key = opt.get('mat_key', 'cube')
        self.bgr2rgb = opt.get('bgr2rgb', True)
        self.rgb_norm = opt.get('rgb_norm', 'minmax')
        self.train = opt.get('phase', 'train') == 'train'
        self.pairs = pair_cubes_with_images(opt.get('dataroot_gt'), opt.get('dataroot_lq'), opt.get('meta_info_file'))
        self.shapes = [mat_cube_shape(cube_path, self.key) for _, cube_path, _ in self.pairs]
        self.cache = None
        if opt.get('cache_data', False):
            self.cache = [(self._load_rgb(rgb_path), read_mat_cube(cube_path, self.key))
                          for _, cube_path, rgb_path in self.pairs]
        if self.train:
            self.patch = int(opt.get('gt_size', 128))
            self.stride = int(opt.get('stride', 8))
            self.grid = []  # patches per row, per image
            ends = []
            for (name, _, _), (_, h, w) in zip(self.pairs, self.shapes):
                if h < self.patch or w < self.patch:
                    raise ValueError(f'HSIDataset: {name} is {h}x{w}, smaller than the patch gt_size {self.patch}')
                rows, cols = (h - self.patch) // self.stride + 1, (w - self.patch) // self.stride + 1
                self.grid.append(cols)
                ends.append((ends[-1] if ends else 0) + rows * cols)
            self.ends = ends

    def _load_rgb(self, path):
        return read_rgb(path, self.bgr2rgb, self.rgb_norm)

    def __len__(self):
        return self.ends[-1] if self.train else len(self.pairs)

    def _image(self, i, window=None):
        """(rgb, cube) of image ``i``, cropped to ``window=(top, left, h, w)`` when given."""
        name, cube_path, rgb_path = self.pairs[i]
        if self.cache is not None:
            rgb, cube = self.cache[i]
            if window is not None:
                top, left, h, w = window
                cube = cube[:, top:top + h, left:left + w]
        else:
            rgb = self._load_rgb(rgb_path)
            cube = read_mat_cube(cube_path, self.key, window)
        full_h, full_w = self.shapes[i][1:]
        if rgb.shape[1:] != (full_h, full_w):
            raise ValueError(f'HSIDataset: {name}: RGB image is {rgb.shape[1]}x{rgb.shape[2]} but the cube is '
                             f'{full_h}x{full_w}')
        if window is not None:
            top, left, h, w = window
            rgb = rgb[:, top:top + h, left:left + w]
        return rgb, cube

    def _patch_window(self, index):
        """(image index, (top, left, h, w)) of training patch ``index`` on the stride grid."""
        i = bisect.bisect_right(self.ends, index)
        row, col = divmod(index - (self.ends[i - 1] if i else 0), self.grid[i])
        return i, (row * self.stride, col * self.stride, self.patch, self.patch)

    def __getitem__(self, index):
        i, window = self._patch_window(index) if self.train else (index, None)
        rgb, cube = self._image(i, window)
        if self.train:
            rot = random.randint(0, 3) if self.opt.get('use_rot', True) else 0
            flip_w = random.randint(0, 1) if self.opt.get('use_flip', True) else 0
            flip_h = random.randint(0, 1) if self.opt.get('use_flip', True) else 0
            rgb, cube = _augment([rgb, cube], rot, flip_w, flip_h)
        _, cube_path, rgb_path = self.pairs[i]
        return {'lq': torch.from_numpy(np.ascontiguousarray(rgb)), 'gt': torch.from_numpy(np.ascontiguousarray(cube)),
                'lq_path': rgb_path, 'gt_path': cube_path}
