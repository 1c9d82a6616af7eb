"""Building a model by arch name and loading its weights (for the leaderboard command).

Arch names come from ``agile_ir_plugin.archs.ARCHS`` (ours) or BasicSR's ``ARCH_REGISTRY`` (which
``import agile_ir_plugin`` has filled with ours too, and which holds BasicSR's own: SwinIR, EDSR,
RRDBNet ...); ``bicubic`` is the parameter-free baseline.  Weights load with
``agile_ir_plugin.checkpoint`` (``torch.load(weights_only=True)``, any layout: BasicSR ``params`` /
``params_ema``, official ``state_dict`` / ``module.``, MMagic ``generator.``, bare), all or nothing.
"""
import torch

from agile_ir_plugin.checkpoint import (SCALE_KEYS, CheckpointError, describe_mismatch, diff_state_dict,
                                        load_state_dict_exact, read_state_dict)

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
        for key in SCALE_KEYS:
            if key in params and key not in kwargs:
                kwargs[key] = scale
                break
    return cls(**kwargs)


def load_weights(model, path, param_key=None, strict=True, build=None, scale=None):
    """Load a checkpoint of any layout (``agile_ir_plugin.checkpoint.extract_state_dict``) into ``model``;
    returns the weight set used ('' for a bare state dict).  ``strict``: every tensor or a
    ``CheckpointError`` naming the keys (and, with ``build``/``scale``, a checkpoint of another scale);
    ``strict=False`` loads what fits and logs the counts of missing and unexpected keys."""
    state, used = read_state_dict(path, param_key)
    if strict:
        return load_state_dict_exact(model, state, path, used, build=build, scale=scale)
    missing, unexpected, shapes = diff_state_dict(model.state_dict(), state)
    if shapes:
        raise CheckpointError(f'{path} [{used or "state dict"}] does not fit {type(model).__name__}, even '
                              f'non-strictly: {describe_mismatch(model.state_dict(), state)}.')
    torch.nn.Module.load_state_dict(model, state, strict=False)
    if missing or unexpected:
        import logging
        logging.getLogger('agile_ir_plugin.evaluation').warning(
            'non-strict load of %s: %d missing, %d unexpected keys', path, len(missing), len(unexpected))
    return used
