"""Building a model by arch name and loading its weights (for the leaderboard command).

Arch names come from ``agile_ir_plugin.archs.ARCHS`` (ours) or BasicSR's ``ARCH_REGISTRY`` (which
``import agile_ir_plugin`` has filled with ours too, and which holds BasicSR's own: SwinIR, EDSR,
RRDBNet ...); ``bicubic`` is the parameter-free baseline.  Weights load with
``agile_ir_plugin.checkpoint.load_checkpoint`` (``torch.load(weights_only=True)``, a clear message
for legacy pickles), from the ``param_key`` of a BasicSR checkpoint (``params`` or ``params_ema``,
whichever exists when not given), ``module.`` prefixes of DataParallel stripped.
"""
from agile_ir_plugin.checkpoint import load_checkpoint

from .bicubic import MatlabBicubic


def build_model(arch, scale=None, **kwargs):
    """Instantiate ``arch`` (a registered name) with ``kwargs``; ``scale`` is passed as ``upscale``
    or ``scale`` when the constructor takes one and it is not given."""
    if arch.lower() == 'bicubic':
        return MatlabBicubic(scale or kwargs.get('scale', 4))
    from agile_ir_plugin.archs import ARCHS
    cls = ARCHS.get(arch)
    if cls is None:
        from basicsr.utils.registry import ARCH_REGISTRY
        try:
            cls = ARCH_REGISTRY.get(arch)  # also finds names BasicSR registered with a suffix
        except KeyError:
            known = sorted(set(ARCHS) | set(name for name, _ in ARCH_REGISTRY))
            raise ValueError(f'unknown arch {arch!r}; known: bicubic, {", ".join(known)}') from None
    if scale is not None:
        import inspect
        params = inspect.signature(cls).parameters
        for key in ('upscale', 'scale', 'upscaling_factor', 'scale_factor'):
            if key in params and key not in kwargs:
                kwargs[key] = scale
                break
    return cls(**kwargs)


def load_weights(model, path, param_key=None, strict=True):
    """Load a checkpoint into ``model``; returns the key that was used ('' for a bare state dict)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path} holds a {type(ckpt).__name__}, not a state dict')
    used = ''
    if param_key:
        if param_key not in ckpt:
            raise ValueError(f'{path} has no {param_key!r}; its keys: {", ".join(map(str, list(ckpt)[:10]))}')
        ckpt, used = ckpt[param_key], param_key
    else:
        for key in ('params', 'params_ema', 'state_dict', 'model'):
            if key in ckpt and isinstance(ckpt[key], dict):
                ckpt, used = ckpt[key], key
                break
    state = {k[7:] if k.startswith('module.') else k: v for k, v in ckpt.items()}
    try:
        result = model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        detail = ' '.join(str(err).split())[:400]
        raise ValueError(f'{path} ({used or "state dict"}) does not fit {type(model).__name__}: {detail}') from None
    if strict is False and (result.missing_keys or result.unexpected_keys):
        import logging
        logging.getLogger('agile_ir_plugin.evaluation').warning(
            'non-strict load of %s: %d missing, %d unexpected keys', path, len(result.missing_keys),
            len(result.unexpected_keys))
    return used
