"""Preflight of the data: every dataset of the options is checked before anything is written.

BasicSR discovers data problems deep inside a data-loader worker, after the experiment folder was
created (or an older one archived): a truncated PNG surfaces as ``'NoneType' object has no attribute
'astype'``, a wrong LR size as ``Scale mismatches`` without a file name.  Checked here:

- every ``dataroot_*`` / ``meta_info_file`` of every dataset exists;
- ``PairedImageDataset`` (disk backend): every HR image has its LR partner (``filename_tmpl``),
  each file is a complete image (PNG ends with ``IEND``, JPEG with ``EOI``, else it is decoded),
  ``LR x scale == HR`` (train; validation tolerates BasicSR's GT crop, i.e. ``LR == HR // scale``)
  and training images are at least ``gt_size``.

Image modes, decided as BasicSR reads them (``imfrombytes`` -> ``cv2.IMREAD_COLOR``): grayscale is
replicated to 3 equal channels (accepted silently: correct for an RGB network); an alpha channel is
dropped and 16-bit PNGs are reduced to 8 bits (``v >> 8``) -- both accepted with a warning naming
the files.  ``preflight: false`` in a dataset skips its checks.  Each problem is one line:
``where: expected ..., got ...`` plus what to do.
"""
import os
from os import path as osp

from ..checkpoint import listed as _short


class InputError(ValueError):
    """Options or data that cannot be used; the message is one actionable line."""


def _closest(key, valid, cutoff=0.8):
    import difflib
    match = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=cutoff)
    return match[0] if match else None


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
_PNG_SIG = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND\xaeB`\x82'


class ImageInfo:
    def __init__(self, width, height, alpha=False, bit_depth=8):
        self.width, self.height, self.alpha, self.bit_depth = width, height, alpha, bit_depth

    @property
    def size(self):
        return self.width, self.height


def inspect_image(path):
    """Header facts of an image file as BasicSR will decode it; InputError when it is not a
    complete image (non-image, empty, truncated)."""
    from PIL import Image
    try:
        with open(path, 'rb') as f:
            head = f.read(32)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError as err:
        raise InputError(f'{path}: expected a readable image file, got {type(err).__name__}: {err}.') from None
    if size == 0:
        raise InputError(f'{path}: expected an image, got an empty file; remove or replace it.')
    if head.startswith(_PNG_SIG) and head[12:16] == b'IHDR':
        width, height = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
        bit_depth, color_type = head[24], head[25]
        complete = tail.endswith(_PNG_IEND)
        info = ImageInfo(width, height, alpha=color_type in (4, 6), bit_depth=bit_depth)
    else:
        try:
            with Image.open(path) as im:
                width, height = im.size
                mode = im.mode
                fmt = im.format
                trns = 'transparency' in im.info
        except Exception as err:  # PIL.UnidentifiedImageError and friends
            raise InputError(f'{path}: expected an image BasicSR can read (PNG, JPEG, BMP, ...), got a file that '
                             f'is not one ({type(err).__name__}); remove it from the folder.') from None
        complete = not (fmt == 'JPEG' and b'\xff\xd9' not in tail)
        info = ImageInfo(width, height, alpha=mode in ('RGBA', 'LA', 'PA') or trns,
                         bit_depth=16 if mode.startswith('I;16') else 8)
    if not complete:  # confirm by decoding, to avoid false alarms (trailing metadata)
        try:
            with Image.open(path) as im:
                im.load()
        except Exception as err:
            raise InputError(f'{path}: expected a complete image, got a truncated or corrupt file '
                             f'({size} bytes; {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}); '
                             're-copy or re-generate it.') from None
    return info


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------
def _missing_paths(where, ds):
    """One line per ``dataroot_*`` / ``meta_info_file`` that does not exist (or is not a folder)."""
    backend = (ds.get('io_backend') or {}).get('type', 'disk')
    problems = []
    for key, value in ds.items():
        if key.startswith('dataroot') and isinstance(value, str):
            if not osp.exists(value):
                problems.append(f'datasets.{where}.{key}: expected an existing folder, got {value!r} (not found); '
                                'fix the path in the options file.')
            elif backend == 'disk' and not osp.isdir(value):
                problems.append(f'datasets.{where}.{key}: expected a folder of images, got {value!r} (a file).')
    meta = ds.get('meta_info_file')
    if meta and not osp.isfile(meta):
        problems.append(f'datasets.{where}.meta_info_file: expected an existing file, got {meta!r} (not found).')
    return problems


def _paired_paths(where, ds):
    """(lq_path, gt_path) pairs the way BasicSR's PairedImageDataset builds them (disk backend),
    with a clear error where BasicSR asserts."""
    from basicsr.utils import scandir
    lq_folder, gt_folder = ds['dataroot_lq'], ds['dataroot_gt']
    tmpl = ds.get('filename_tmpl', '{}')
    if ds.get('meta_info_file'):
        with open(ds['meta_info_file']) as f:
            gt_names = [line.strip().split(' ')[0] for line in f if line.strip()]
    else:
        gt_names = sorted(scandir(gt_folder))
    lq_names = set(scandir(lq_folder))
    pairs = []
    for gt_name in gt_names:
        base, ext = osp.splitext(osp.basename(gt_name))
        lq_name = f'{tmpl.format(base)}{ext}'
        gt_path = osp.join(gt_folder, gt_name)
        if not ds.get('meta_info_file') and lq_name not in lq_names:
            inspect_image(gt_path)  # a stray non-image in the HR folder: say that, not "no partner"
            guess = _closest(lq_name, lq_names, cutoff=0.5)
            raise InputError(f"datasets.{where}: no LR image for HR {gt_path!r}: expected {osp.join(lq_folder, lq_name)!r} "
                             f"(filename_tmpl {tmpl!r}), got " + (f'{guess!r} as the nearest name in dataroot_lq; '
                                                                 'fix filename_tmpl or rename the files.'
                                                                 if guess else 'no similar name in dataroot_lq.'))
        if ds.get('meta_info_file') and not osp.isfile(gt_path):
            raise InputError(f'datasets.{where}: meta_info_file lists {gt_name!r}, expected {gt_path!r}, got no such file.')
        pairs.append((osp.join(lq_folder, lq_name), gt_path))
    if not ds.get('meta_info_file') and len(lq_names) != len(gt_names):
        extra = sorted(lq_names - {osp.basename(lq) for lq, _ in pairs})
        raise InputError(f'datasets.{where}: expected one LR image per HR image ({len(gt_names)}), got {len(lq_names)} '
                         f'in dataroot_lq; without an HR partner: {_short(extra)}.')
    if not pairs:
        raise InputError(f'datasets.{where}.dataroot_gt: expected images, got an empty folder {gt_folder!r}.')
    return pairs


def check_paired_dataset(where, ds, warnings):
    """Pairing, completeness, sizes and image modes of a disk PairedImageDataset."""
    scale = int(ds.get('scale', 1))
    train = ds['phase'] == 'train'
    gt_size = ds.get('gt_size') if train else None
    alpha, deep = [], []
    for lq_path, gt_path in _paired_paths(where, ds):
        gt, lq = inspect_image(gt_path), inspect_image(lq_path)
        for path, info in ((gt_path, gt), (lq_path, lq)):
            if info.alpha:
                alpha.append(path)
            if info.bit_depth > 8:
                deep.append(path)
        expected = (lq.width * scale, lq.height * scale)
        if train:
            ok = gt.size == expected
        else:  # BasicSR crops the GT to LR * scale for validation
            ok = all(e <= g < e + scale for e, g in zip(expected, gt.size))
        if not ok and (lq.width, lq.height) == (gt.width // scale, gt.height // scale):
            raise InputError(f'datasets.{where}: HR {gt_path!r} is {gt.width}x{gt.height}, not a multiple of the scale '
                             f'{scale}: training needs HR = LR x {scale} exactly ({lq.width}x{lq.height} x {scale} = '
                             f'{lq.width * scale}x{lq.height * scale}); crop the HR to '
                             f'{lq.width * scale}x{lq.height * scale} (mod-crop) or remove it.')
        if not ok:
            want = f'{gt.width // scale}x{gt.height // scale}'
            raise InputError(f'datasets.{where}: size mismatch: HR {gt_path!r} is {gt.width}x{gt.height}, so its LR at '
                             f'x{scale} should be {want}, got {lq.width}x{lq.height} ({lq_path!r}); check `scale` or '
                             'crop the HR to a multiple of the scale and regenerate the LR.')
        if gt_size and min(gt.width, gt.height) < gt_size:
            raise InputError(f'datasets.{where}: {gt_path!r} is {gt.width}x{gt.height}, smaller than the training patch '
                             f'gt_size={gt_size}: expected at least {gt_size}x{gt_size}; remove the image or lower gt_size.')
    if alpha:
        warnings.append(f'datasets.{where}: {len(alpha)} image(s) have an alpha channel, dropped when BasicSR reads '
                        f'them as RGB (cv2.IMREAD_COLOR): {_short(alpha)}.')
    if deep:
        warnings.append(f'datasets.{where}: {len(deep)} image(s) are 16-bit; BasicSR reads them as 8-bit '
                        f'(cv2.IMREAD_COLOR keeps the top 8 bits): {_short(deep)}.')


def check_datasets(opt, problems, warnings, phases=None):
    """Every dataset (or those whose phase is in ``phases``): one problem line per broken dataset."""
    for phase, ds in (opt.get('datasets') or {}).items():
        if not isinstance(ds, dict) or ds.get('preflight', True) is False:
            continue
        kind = phase.split('_')[0]
        if phases is not None and kind not in phases:
            continue
        # as BasicSR's parse_options sets them (so raw YAML options validate the same)
        ds = {**ds, 'scale': ds.get('scale', opt.get('scale', 1)), 'phase': ds.get('phase', kind)}
        missing = _missing_paths(phase, ds)
        problems += missing
        if missing:
            continue
        try:
            backend = (ds.get('io_backend') or {}).get('type', 'disk')
            if ds.get('type') == 'PairedImageDataset' and backend == 'disk':
                check_paired_dataset(phase, ds, warnings)
        except InputError as err:
            problems.append(str(err))
