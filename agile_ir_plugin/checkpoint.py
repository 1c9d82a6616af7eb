"""Checkpoints: safe loading, the one converter between layouts, and whole-or-nothing loads (pure torch).

``.pth``/``.state`` files are pickles; loading a stranger's pickle can run code.  Everything the
plugin writes is plain tensors, numbers, strings, lists and dicts, so it loads with
``weights_only=True``.  A legacy pickle is refused with the name of the switch that allows it
for files you trust: ``allow_pickle=True`` or the environment variable ``AGILE_IR_ALLOW_PICKLE=1``.

Layouts read by :func:`extract_state_dict` (every loader of the plugin goes through it):

- BasicSR (and the official ESC / Restormer, which are BasicSR forks): ``{'params': sd, 'params_ema': sd}``;
- official MST++ and other DataParallel code: ``{'state_dict': sd}``, keys possibly prefixed ``module.``;
- MMagic / mmengine: ``{'state_dict': {'generator.<k>': ..., 'generator_ema.<k>': ...}, 'meta': ...}``
  (``generator_ema.module.<k>`` of an EMA wrapper too) and ``{'ema_state_dict': {'module.generator.<k>'}}``;
- a bare state dict (``{'<k>': tensor}``).

Weight sets have one name whatever the layout: ``params`` (= MMagic ``generator``) and
``params_ema`` (= ``generator_ema``).  A key the caller names explicitly must exist: there is no
fallback from ``params_ema`` to ``params``.  :func:`load_state_dict_exact` loads every tensor or raises
:class:`CheckpointError` with one line naming the missing, unexpected and mis-shaped keys.
"""
import io
import os
import pickletools
import re
import zipfile

import torch

ALLOW_PICKLE_ENV = 'AGILE_IR_ALLOW_PICKLE'
# constructor arguments that hold an SR network's scale, in every arch the plugin knows (ours, BasicSR's)
SCALE_KEYS = ('upscale', 'scale', 'upscaling_factor', 'upscale_factor', 'scale_factor')
WEIGHT_SETS = ('params', 'params_ema')
MMAGIC_PREFIX = {'params': 'generator.', 'params_ema': 'generator_ema.'}
MAX_LISTED = 4
_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
_TORCH_LEGACY_MAGIC = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message is one line naming the file and what to do."""


def clean_message(err):
    """``str(err)`` on one line, without terminal colour codes."""
    return ' '.join(_ANSI.sub('', str(err)).split())


def first_sentence(err):
    """The first whole sentence of ``clean_message(err)``, without its full stop (never cut inside it)."""
    text = clean_message(err)
    match = re.match(r'(.+?[.!?])(?:\s|$)', text)
    return (match.group(1) if match else text).rstrip('.')


def listed(items, limit=MAX_LISTED):
    """``'a', 'b', 'c' ... (12 in all)``: a few names and the count."""
    items = list(items)
    shown = ', '.join(repr(x) for x in items[:limit])
    return shown + (f' ... ({len(items)} in all)' if len(items) > limit else '')


# ---------------------------------------------------------------------------------------------
# Loading a file
# ---------------------------------------------------------------------------------------------
def _pickle_is_complete(path):
    """True when the file holds whole pickles, read without running any of it (``pickletools.genops``
    only parses opcodes).  torch's legacy (non-zip) format is four pickles, the object the 4th,
    followed by raw storage bytes; a plain pickle is one."""
    with open(path, 'rb') as f:
        stream = io.BytesIO(f.read())
    count = 4 if stream.getvalue().startswith(_TORCH_LEGACY_MAGIC) else 1
    try:
        for _ in range(count):
            for _op in pickletools.genops(stream):
                pass
    except Exception:  # ValueError: an opcode or argument cut short
        return False
    return True


def _is_torch_legacy(path):
    with open(path, 'rb') as f:
        return f.read(len(_TORCH_LEGACY_MAGIC)) == _TORCH_LEGACY_MAGIC


def _unpickler_reason(err):
    text = clean_message(err)
    match = re.search(r'Unsupported global: GLOBAL (\S+) was not an allowed global', text)
    if match:
        return f'it stores a {match.group(1)} object'
    match = re.search(r'WeightsUnpickler error: (.*?)(?: Check the documentation|$)', text)
    return match.group(1).rstrip('. ') if match else 'it holds objects other than tensors and plain data'


def load_checkpoint(path, map_location='cpu', allow_pickle=None):
    """``torch.load`` with ``weights_only=True`` and one-line errors.

    Raises CheckpointError for a missing, truncated/corrupt or legacy-pickle file."""
    path = os.fspath(path)
    if allow_pickle is None:
        allow_pickle = os.environ.get(ALLOW_PICKLE_ENV, '') not in ('', '0')
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    is_zip = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=not allow_pickle)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, BadZipFile, OSError...
        if isinstance(err, MemoryError):
            raise
        with open(path, 'rb') as f:
            head = f.read(2)
        refused = 'Weights only load failed' in str(err) or 'GLOBAL' in str(err)
        raw = not is_zip and head[:1] == b'\x80' and not _is_torch_legacy(path) and _pickle_is_complete(path)
        if raw and allow_pickle:  # torch.load reads only its own formats; the user trusts this file
            import pickle
            with open(path, 'rb') as f:
                return pickle.load(f)
        if raw or (refused and (is_zip or (head[:1] == b'\x80' and _pickle_is_complete(path)))):
            kind = 'a raw Python pickle (not written by torch.save)' if raw else 'a legacy pickle checkpoint'
            reason = _unpickler_reason(err) if refused else 'it is not in a torch.save format'
            raise CheckpointError(
                f'{path} is {kind} and is refused: {reason}, which loading with weights_only=True does not '
                f'allow. Loading it can run arbitrary code: only if you trust the file, set {ALLOW_PICKLE_ENV}=1 '
                f'(or pass allow_pickle=True), or re-save its tensors with torch.save.') from None
        size = os.path.getsize(path)
        raise CheckpointError(f'{path} is truncated or corrupt and cannot be loaded ({size} bytes; '
                              f'{type(err).__name__}: {first_sentence(err)}).') from None


# ---------------------------------------------------------------------------------------------
# The converter: any layout -> a state dict
# ---------------------------------------------------------------------------------------------
def _strip(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _strip_module(sd):
    if sd and all(k.startswith('module.') for k in sd):
        return _strip(sd, 'module.')
    return sd


def _mmagic_set(sd, prefix):
    """The generator weights under ``prefix`` of an mmengine ``state_dict`` (an EMA wrapper's
    ``module.`` removed, its ``steps`` counter dropped)."""
    sub = _strip(sd, prefix)
    if sub and any(k.startswith('module.') for k in sub):
        sub = {k: v for k, v in sub.items() if k.startswith('module.')}
    return _strip_module(sub)


def weight_sets(ckpt, path='checkpoint'):
    """Every weight set in a loaded checkpoint: ``{'params': sd, 'params_ema': sd}`` (those present),
    ``{'': sd}`` for a single unnamed set (bare or official ``state_dict``)."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path} holds a {type(ckpt).__name__}, expected a dict of weights.')
    sets = {k: ckpt[k] for k in WEIGHT_SETS if isinstance(ckpt.get(k), dict)}
    if sets:
        return {k: _strip_module(v) for k, v in sets.items()}
    for key in ('state_dict', 'ema_state_dict'):
        sd = ckpt.get(key)
        if not isinstance(sd, dict):
            continue
        if key == 'ema_state_dict':  # mmengine EMAHook: 'module.generator.<k>'
            sd = {k: v for k, v in _strip_module(
                {k: v for k, v in sd.items() if k.startswith('module.')}).items()}
            found = _mmagic_set(sd, 'generator.')
            if found:
                return {'params_ema': found}
            continue
        found = {name: _mmagic_set(sd, prefix) for name, prefix in MMAGIC_PREFIX.items()}
        found = {name: v for name, v in found.items() if v}
        if found:
            return found
        return {'': _strip_module(sd)}
    if ckpt.get('model') is not None and isinstance(ckpt['model'], dict):
        return {'': _strip_module(ckpt['model'])}
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {'': _strip_module(ckpt)}
    raise CheckpointError(f'{path}: found no weights; expected params / params_ema (BasicSR), state_dict '
                          f'(official, MMagic) or a bare state dict, got the top-level keys {listed(ckpt)}.')


def _mmagic_name(name):
    return {'params': 'generator', 'params_ema': 'generator_ema'}.get(name, name)


def extract_state_dict(ckpt, param_key=None, path='checkpoint'):
    """``(state_dict, used_key)`` from a loaded checkpoint of any layout (see the module docstring).

    ``param_key``: ``params`` / ``params_ema`` (MMagic's ``generator`` / ``generator_ema`` are the
    same sets); it must exist, a request for one set never returns another.  ``None``: ``params``
    if present, else ``params_ema``, else the single unnamed set.  ``used_key`` is ``''`` for a bare
    or official state dict."""
    sets = weight_sets(ckpt, path)
    if param_key is not None and param_key != '':
        want = {'generator': 'params', 'generator_ema': 'params_ema'}.get(param_key, param_key)
        if want in sets:
            used = want
        elif want in ('state_dict', 'model') and '' in sets:
            used = ''
        else:
            mm = isinstance(ckpt, dict) and not any(k in ckpt for k in WEIGHT_SETS)
            have = [(_mmagic_name(k) if mm else k) or 'a bare state dict' for k in sets]
            raise CheckpointError(f'{path} has no {param_key!r} weights; it holds: {", ".join(have)}. '
                                  f'Name one of those as the param key.')
    else:
        used = next(k for k in ('params', 'params_ema', '') if k in sets)
    sd = sets[used]
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f'{path} [{used or "state dict"}]: expected tensors only, got other values at '
                              f'{listed(bad)}.')
    return sd, used


def read_state_dict(path, param_key=None):
    """``extract_state_dict(load_checkpoint(path), param_key, path)``."""
    return extract_state_dict(load_checkpoint(path), param_key, path)


def diff_state_dict(expected, sd):
    """(missing, unexpected, shape mismatches) of ``sd`` against the state dict ``expected``."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, shapes


def describe_mismatch(expected, sd):
    """'missing keys ...; unexpected keys ...; shape mismatches ...' ('' when they fit exactly)."""
    missing, unexpected, shapes = diff_state_dict(expected, sd)
    parts = []
    if missing:
        parts.append(f'missing keys {listed(missing)}')
    if unexpected:
        parts.append(f'unexpected keys {listed(unexpected)}')
    if shapes:
        parts.append('shape mismatches ' + listed(
            f'{k}: {tuple(sd[k].shape)} in the checkpoint vs {tuple(expected[k].shape)}' for k in shapes))
    return '; '.join(parts)


def infer_scale(build, sd, current, tried=(1, 2, 3, 4, 8)):
    """The scale ``s`` (other than ``current``) for which ``build(s)`` has exactly the keys and shapes of
    ``sd``; None when none does.  ``build``: scale -> model (or state dict)."""
    for s in tried:
        if s == current:
            continue
        try:
            net = build(s)
        except Exception:  # a scale the arch cannot take
            continue
        net_sd = net.state_dict() if hasattr(net, 'state_dict') else net
        if not any(diff_state_dict(net_sd, sd)):
            return s
    return None


def load_state_dict_exact(model, state_dict, path='checkpoint', used_key='', build=None, scale=None):
    """Load every tensor of ``state_dict`` into ``model`` or raise CheckpointError (one line naming the
    missing / unexpected / mis-shaped keys).  With ``build`` (scale -> a fresh model) and ``scale`` (this
    model's), a checkpoint of another scale is named as such."""
    expected = model.state_dict()
    problem = describe_mismatch(expected, state_dict)
    if problem:
        where = f'{path} [{used_key}]' if used_key else path
        hint = ''
        if build is not None and scale is not None:
            other = infer_scale(build, state_dict, scale)
            if other is not None:
                hint = f' It is a x{other} checkpoint and the network is x{scale}: use a x{scale} checkpoint.'
        raise CheckpointError(f'{where} does not fit {type(model).__name__}: {problem}.{hint}')
    model.load_state_dict(state_dict, strict=True)
    return used_key


# ---------------------------------------------------------------------------------------------
# Writing another layout
# ---------------------------------------------------------------------------------------------
def to_layout(sets, to='basicsr', meta=None):
    """A checkpoint dict in BasicSR (``params`` / ``params_ema``) or MMagic (``state_dict`` with
    ``generator.`` / ``generator_ema.``) layout from ``{'params': sd, 'params_ema': sd}``."""
    if to == 'basicsr':
        return {name: dict(sd) for name, sd in sets.items()}
    if to == 'mmagic':
        state = {}
        for name, sd in sets.items():
            state.update({MMAGIC_PREFIX[name] + k: v for k, v in sd.items()})
        return {'meta': dict(meta or {}), 'state_dict': state}
    raise ValueError(f"to must be 'basicsr' or 'mmagic', got {to!r}")


def save_verified(obj, dst):
    """``torch.save`` to a temporary file next to ``dst``, read back with ``weights_only=True``, then
    renamed into place: ``dst`` is either the complete file or untouched."""
    dst = os.fspath(dst)
    tmp = f'{dst}.tmp{os.getpid()}'
    try:
        torch.save(obj, tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        torch.load(tmp, map_location='cpu', weights_only=True)
        os.replace(tmp, dst)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, Exception):
            raise CheckpointError(f'could not write {dst}: {type(err).__name__}: {clean_message(err)}') from None
        raise
    return dst


def convert_checkpoint(src, dst, to='basicsr', param_key=None):
    """Read ``src`` (any layout :func:`extract_state_dict` knows) and write ``dst`` in BasicSR or MMagic
    layout.  ``param_key=None`` keeps every weight set (a single unnamed one becomes ``params`` /
    ``generator``); a named one writes only that set, as ``params`` / ``generator``.  Returns
    ``{'sets': {written name: source key}, 'tensors': n}``."""
    if to not in ('basicsr', 'mmagic'):
        raise CheckpointError(f"convert: the target layout must be 'basicsr' or 'mmagic', got {to!r}")
    if os.path.abspath(os.fspath(src)) == os.path.abspath(os.fspath(dst)):
        raise CheckpointError(f'convert: the output {dst} is the input file; choose another path')
    ckpt = load_checkpoint(src)
    if param_key:
        sd, used = extract_state_dict(ckpt, param_key, os.fspath(src))
        sets, origin = {'params': sd}, {'params': used}
    else:
        found = weight_sets(ckpt, os.fspath(src))
        for name, sd in found.items():
            extract_state_dict(ckpt, name or None, os.fspath(src))  # tensors only
        sets = {(name or 'params'): sd for name, sd in found.items()}
        origin = {(name or 'params'): name for name in found}
    names = {name: (MMAGIC_PREFIX[name].rstrip('.') if to == 'mmagic' else name) for name in sets}
    save_verified(to_layout(sets, to, meta={'converted_from': os.path.basename(os.fspath(src))}), dst)
    return {'sets': {names[n]: origin[n] for n in sets}, 'tensors': sum(len(sd) for sd in sets.values())}
