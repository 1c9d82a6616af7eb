"""Preflight checks for BasicSR training options: bad inputs fail before anything is written.

BasicSR discovers most input problems deep inside a data-loader worker or ``load_state_dict``,
after the experiment folder was created (or an older one archived): a truncated PNG surfaces as
``'NoneType' object has no attribute 'astype'``, a wrong LR size as ``Scale mismatches`` without a
file name, a x2 checkpoint in a x4 run as a page of ``size mismatch for upsample.0.weight``.
``validate_options`` checks, before the trainer touches the disk:

- every ``dataroot_*`` / ``meta_info_file`` of every dataset exists;
- ``PairedImageDataset`` (disk backend): every HR image has its LR partner (``filename_tmpl``),
  each file is a complete image (PNG ends with ``IEND``, JPEG with ``EOI``, else it is decoded),
  ``LR x scale == HR`` (train; validation tolerates BasicSR's GT crop, i.e. ``LR == HR // scale``)
  and training images are at least ``gt_size``;
- ``path.pretrain_network_*`` fits ``network_*`` when loaded strictly: names the missing /
  unexpected keys and the likely cause (``params`` vs ``params_ema``, a key prefix, a plain
  state_dict, a different ``scale``);
- option keys: a key that nothing reads but that is close to one that is read gets a warning
  naming the closest valid key (``difflib``); arch / optimizer / scheduler / loss sub-options are
  checked against the constructor's signature (an arch without ``**kwargs`` would fail anyway, so
  an unknown key there is an error).

Image modes, decided as BasicSR reads them (``imfrombytes`` -> ``cv2.IMREAD_COLOR``):
grayscale is replicated to 3 equal channels (accepted silently: correct for an RGB network);
an alpha channel is dropped and 16-bit PNGs are reduced to 8 bits (``v >> 8``) -- both accepted
with a warning naming the files, since the RGB behind transparent pixels is arbitrary and the
extra precision is lost.

Every problem is one line: ``where: expected ..., got ...`` plus what to do.
"""
import difflib
import functools
import inspect
import os
import re
from copy import deepcopy
from os import path as osp

from ..checkpoint import CheckpointError, load_checkpoint

SCALE_KEYS = ('upscale', 'scale', 'upscaling_factor', 'upscale_factor')
TRIED_SCALES = (1, 2, 3, 4, 8)
MAX_LISTED = 4  # keys / files named in one message


class InputError(ValueError):
    """Options or data that cannot train; the message is one actionable line."""


def _short(items, limit=MAX_LISTED):
    items = list(items)
    shown = ', '.join(repr(x) for x in items[:limit])
    return shown + (f' ... ({len(items)} in all)' if len(items) > limit else '')


# --------------------------------------------------------------------------------------------
# Option keys
# --------------------------------------------------------------------------------------------
_KEY_PATTERNS = (re.compile(r"""\[\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\]"""),
                 re.compile(r"""\.(?:get|pop|setdefault)\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]"""),
                 re.compile(r"""['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s+(?:not\s+)?in\s+(?:opt|self\.opt|\w*_opt)\b"""))


@functools.lru_cache(maxsize=1)
def known_option_keys():
    """Every key that BasicSR or this plugin reads from a dict by a literal name (a superset of the
    option keys, found by scanning their sources)."""
    import basicsr

    from .. import __file__ as plugin_init
    keys = set()
    for root in (osp.dirname(basicsr.__file__), osp.dirname(plugin_init)):
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith('.py'):
                    with open(osp.join(folder, name), encoding='utf-8', errors='replace') as f:
                        text = f.read()
                    for pattern in _KEY_PATTERNS:
                        keys.update(pattern.findall(text))
    return frozenset(keys)


def _closest(key, valid, cutoff=0.8):
    match = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=cutoff)
    return match[0] if match else None


def _signature_keys(fn):
    """(parameter names, accepts **kwargs) of a callable or class."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != 'self'}
    return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def _check_typed_section(where, section, cls, warnings, strict_when_closed):
    """``section`` is ``{type: X, **kwargs}`` passed to ``cls(**kwargs)``."""
    names, var_kw = _signature_keys(cls)
    for key in section:
        if key == 'type' or key in names:
            continue
        guess = _closest(key, names, cutoff=0.75)
        hint = f" (did you mean '{guess}'?)" if guess else ''
        if not var_kw and strict_when_closed:
            raise InputError(f"{where}.{key}: {getattr(cls, '__name__', cls)} has no option '{key}'{hint}; "
                             f'its options are: {", ".join(sorted(names))}.')
        if guess:
            warnings.append(f"{where}.{key}: {getattr(cls, '__name__', cls)} does not take '{key}' "
                            f"(it is ignored); did you mean '{guess}'?")


def _registry_get(registry, name):
    try:
        return registry.get(name)
    except KeyError:
        return None


def check_option_keys(opt):
    """Warnings for probable typos in option keys; raises for an arch option an arch cannot take."""
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

    known = known_option_keys()
    warnings = []

    def generic(where, section, skip=()):
        for key in section:
            if key in known or key in skip:
                continue
            guess = _closest(key, known)
            if guess:
                warnings.append(f"{where}{key}: no component reads this option; did you mean '{guess}'?")

    generic('', opt, skip=[k for k in opt if k.startswith('network_')])
    for phase, ds in (opt.get('datasets') or {}).items():
        if isinstance(ds, dict):
            generic(f'datasets.{phase}.', ds)
    for section in ('path', 'val', 'logger'):
        if isinstance(opt.get(section), dict):
            generic(f'{section}.', opt[section])
    train = opt.get('train') or {}
    for key, sub in train.items():
        if not isinstance(sub, dict) or 'type' not in sub:
            continue
        where = f'train.{key}'
        if key.startswith('optim_'):
            cls = getattr(torch.optim, sub['type'], None)
        elif key == 'scheduler':
            from basicsr.models import lr_scheduler
            cls = getattr(lr_scheduler, sub['type'], None) or getattr(torch.optim.lr_scheduler, sub['type'], None)
        else:
            cls = _registry_get(LOSS_REGISTRY, sub['type'])
        if cls is not None:
            _check_typed_section(where, sub, cls, warnings, strict_when_closed=False)
    generic('train.', {k: v for k, v in train.items() if not (isinstance(v, dict) and 'type' in v)})
    for key, sub in opt.items():
        if key.startswith('network_') and isinstance(sub, dict) and 'type' in sub:
            cls = _registry_get(ARCH_REGISTRY, sub['type'])
            if cls is None:
                guess = _closest(sub['type'], list(ARCH_REGISTRY._obj_map), cutoff=0.6)
                raise InputError(f"{key}.type: no arch named '{sub['type']}' is registered"
                                 + (f"; did you mean '{guess}'?" if guess else '.'))
            _check_typed_section(key, sub, cls, warnings, strict_when_closed=True)
    return warnings


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
def _check_paths_exist(where, ds):
    backend = (ds.get('io_backend') or {}).get('type', 'disk')
    for key, value in ds.items():
        if key.startswith('dataroot') and isinstance(value, str):
            if not osp.exists(value):
                raise InputError(f'datasets.{where}.{key}: expected an existing folder, got {value!r} (not found); '
                                 'fix the path in the options file.')
            if backend == 'disk' and not osp.isdir(value):
                raise InputError(f'datasets.{where}.{key}: expected a folder of images, got {value!r} (a file).')
    meta = ds.get('meta_info_file')
    if meta and not osp.isfile(meta):
        raise InputError(f'datasets.{where}.meta_info_file: expected an existing file, got {meta!r} (not found).')


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


def check_datasets(opt):
    warnings = []
    for phase, ds in (opt.get('datasets') or {}).items():
        if not isinstance(ds, dict):
            continue
        if ds.get('preflight', True) is False:
            continue
        # as BasicSR's parse_options sets them (so raw YAML options validate the same)
        ds = {**ds, 'scale': ds.get('scale', opt.get('scale', 1)), 'phase': ds.get('phase', phase.split('_')[0])}
        _check_paths_exist(phase, ds)
        backend = (ds.get('io_backend') or {}).get('type', 'disk')
        if ds.get('type') == 'PairedImageDataset' and backend == 'disk':
            check_paired_dataset(phase, ds, warnings)
    return warnings


# --------------------------------------------------------------------------------------------
# Pretrained weights vs the arch
# --------------------------------------------------------------------------------------------
def _build_arch(net_opt):
    from basicsr.utils.registry import ARCH_REGISTRY
    net_opt = deepcopy(net_opt)
    return ARCH_REGISTRY.get(net_opt.pop('type'))(**net_opt)


def _diff(net_sd, sd):
    missing = [k for k in net_sd if k not in sd]
    unexpected = [k for k in sd if k not in net_sd]
    shapes = [k for k in net_sd if k in sd and hasattr(sd[k], 'shape') and tuple(sd[k].shape) != tuple(net_sd[k].shape)]
    return missing, unexpected, shapes


def _infer_scale(net_opt, sd):
    """The scale at which ``net_opt``'s arch has exactly the keys and shapes of ``sd`` (or None)."""
    key = next((k for k in SCALE_KEYS if k in net_opt), None)
    if key is None:
        return None, None
    for s in TRIED_SCALES:
        if s == net_opt[key]:
            continue
        try:
            net = _build_arch({**net_opt, key: s})
        except Exception:
            continue
        if not any(_diff(net.state_dict(), sd)):
            return key, s
    return key, None


def _common_prefix_fix(keys, net_keys):
    """A prefix that, stripped from (or added to) the checkpoint keys, makes them the arch's keys."""
    keys, net_keys = list(keys), set(net_keys)
    if not keys:
        return None
    first = keys[0].split('.')[0] + '.'
    if all(k.startswith(first) for k in keys) and {k[len(first):] for k in keys} == net_keys:
        return f"the checkpoint keys carry the prefix '{first}' (strip it)"
    for k in net_keys:
        if k.endswith(keys[0]) and k != keys[0]:
            prefix = k[:-len(keys[0])]
            if {prefix + x for x in keys} == net_keys:
                return f"the arch's keys carry the prefix '{prefix}' that the checkpoint lacks"
            break
    return None


def check_pretrained(opt, warnings):
    """For every ``path.pretrain_network_X``: the checkpoint's weights fit ``network_X`` as loaded
    by BasicSR (``param_key_X``, ``module.`` stripped, ``strict_load_X``)."""
    import torch
    paths = opt.get('path') or {}
    for key, net_opt in opt.items():
        if not key.startswith('network_') or not isinstance(net_opt, dict):
            continue
        name = key[len('network_'):]
        ckpt_path = paths.get(f'pretrain_network_{name}')
        if not ckpt_path:
            continue
        where = f'path.pretrain_network_{name}'
        strict = paths.get(f'strict_load_{name}', True)
        param_key = paths.get(f'param_key_{name}', 'params')
        try:
            ckpt = load_checkpoint(ckpt_path)
        except CheckpointError as err:
            raise CheckpointError(f'{where}: {err}') from None
        if not isinstance(ckpt, dict):
            raise InputError(f'{where}: expected a dict of weights in {ckpt_path!r}, got a {type(ckpt).__name__}.')
        top = list(ckpt)
        flat = all(isinstance(v, torch.Tensor) for v in ckpt.values())
        if param_key is not None:
            if param_key not in ckpt and 'params' in ckpt:
                param_key = 'params'  # BasicSR's own fallback (params_ema -> params)
            if param_key not in ckpt:
                if flat:
                    cause = f"it is a plain state_dict (no {param_key!r} key): set path.param_key_{name}: ~"
                elif 'params_ema' in ckpt:
                    cause = f'it holds params_ema: set path.param_key_{name}: params_ema'
                elif 'state_dict' in ckpt:
                    cause = ("it looks like an MMEngine/MMagic checkpoint ('state_dict'); convert it to "
                             "{'params': ...} with the prefix (e.g. 'generator.') stripped")
                else:
                    cause = f'set path.param_key_{name} to the key that holds the weights'
                raise InputError(f'{where}: {ckpt_path!r} has no {param_key!r} entry: expected one of its top-level keys '
                                 f'{_short(top)}; {cause}.')
            sd = ckpt[param_key]
        else:
            sd = ckpt
        if not isinstance(sd, dict):
            raise InputError(f'{where}: expected a state_dict under {param_key!r} in {ckpt_path!r}, got {type(sd).__name__}.')
        sd = {(k[7:] if k.startswith('module.') else k): v for k, v in sd.items()}
        try:
            net = _build_arch(net_opt)
        except InputError:
            raise
        except Exception:  # the arch itself cannot be built: BasicSR will say why
            continue
        net_sd = net.state_dict()
        missing, unexpected, shapes = _diff(net_sd, sd)
        if not (missing or unexpected or shapes):
            continue
        scale_key, ckpt_scale = _infer_scale(net_opt, sd)
        if ckpt_scale is not None:
            line = (f"{where}: {ckpt_path!r} was trained for x{ckpt_scale}, options say x{net_opt[scale_key]} "
                    f"({key}.{scale_key}); use a x{net_opt[scale_key]} checkpoint or x{ckpt_scale} options")
            if strict:
                raise InputError(line + f', or set path.strict_load_{name}: false to fine-tune from it '
                                        '(the mismatched upsampler layers are then skipped).')
            warnings.append(line + ': mismatched layers are skipped (strict_load false).')
            continue
        cause = _common_prefix_fix(sd, net_sd)
        other = 'params_ema' if param_key == 'params' else 'params'
        if cause is None and param_key in ('params', 'params_ema') and isinstance(ckpt.get(other), dict):
            o_sd = {(k[7:] if k.startswith('module.') else k): v for k, v in ckpt[other].items()}
            if not any(_diff(net_sd, o_sd)):
                cause = f"the arch matches the checkpoint's {other!r}: set path.param_key_{name}: {other}"
        if cause is None:
            cause = f'{key} options (depths, dims, heads, upsampler, ...) differ from those the checkpoint was trained with'
        parts = []
        if missing:
            parts.append(f'missing keys {_short(missing)}')
        if unexpected:
            parts.append(f'unexpected keys {_short(unexpected)}')
        if shapes:
            parts.append('shape mismatches ' + _short(f'{k}: {tuple(sd[k].shape)} vs {tuple(net_sd[k].shape)}'
                                                      for k in shapes))
        line = (f'{where}: {ckpt_path!r} [{param_key}] does not match {key} ({net_opt.get("type")}): '
                f'{"; ".join(parts)}. Likely cause: {cause}')
        if strict:
            raise InputError(line + '.')
        warnings.append(line + ' (loaded non-strictly).')


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def validate_options(opt, check_weights=True):
    """Run every preflight check; returns warning lines, raises InputError/CheckpointError on the
    first problem that would stop training."""
    warnings = check_option_keys(opt)
    amp = (opt.get('train') or {}).get('amp')
    if amp not in (None, False, 'fp32', 'bf16', 'fp16'):
        raise InputError(f"train.amp: expected one of fp32, bf16, fp16 (or no key), got {amp!r}.")
    warnings += check_datasets(opt)
    if check_weights:
        check_pretrained(opt, warnings)
    return warnings
