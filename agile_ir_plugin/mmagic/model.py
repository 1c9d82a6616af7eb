"""``agile_ir.BaseEditModel``: MMagic's ``BaseEditModel`` whose weight loads are whole or an error.

mmengine loads ``load_from`` / ``init_cfg=dict(type='Pretrained', ...)`` / ``tools/test.py CKPT`` with
``strict=False`` and only warns about what did not fit: a BasicSR checkpoint (``params`` /
``params_ema``) given to MMagic's own ``BaseEditModel`` changes 0 of its generator tensors.  This
subclass adds one ``load_state_dict`` pre-hook (torch's seam, which mmengine's loader runs too) that

* reads every layout of :func:`agile_ir_plugin.checkpoint.extract_state_dict` -- MMagic / mmengine
  (``generator.`` / ``generator_ema.``), BasicSR and the official ESC / Restormer code (``params`` /
  ``params_ema``), official MST++ (``state_dict``, ``module.``) and bare state dicts -- and puts the
  weights under ``generator.``;
* stops with one :class:`~agile_ir_plugin.checkpoint.CheckpointError` line naming the missing,
  unexpected and mis-shaped keys (e.g. an x2 checkpoint for an x4 model) before any tensor is
  copied.

``load_param_key``: the BasicSR weight set to read (``params`` / ``params_ema``; MMagic's
``generator`` / ``generator_ema``); default ``params``, else ``params_ema``, as BasicSR does.
"""
import logging

from mmagic.models import BaseEditModel
from mmengine.logging import print_log

from ..checkpoint import CheckpointError, describe_mismatch, extract_state_dict

GENERATOR = 'generator.'


def _layout(sd):
    """The state dict seen by the hook as a checkpoint for extract_state_dict."""
    if any(isinstance(v, dict) for v in sd.values()):
        return dict(sd)  # BasicSR: {'params': {...}, 'params_ema': {...}}
    if any(k.startswith(('generator.', 'generator_ema.')) for k in sd):
        return {'state_dict': dict(sd)}  # MMagic / mmengine
    return dict(sd)  # official (its 'state_dict' already taken out by mmengine) or bare


class AgileEditModel(BaseEditModel):
    """MMagic's ``BaseEditModel`` that loads checkpoints of every layout, whole or not at all."""

    def __init__(self, *args, load_param_key=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.load_param_key = load_param_key
        self.register_load_state_dict_pre_hook(_convert_and_check)


def _convert_and_check(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                       error_msgs):
    if prefix:  # the model inside a wrapper: the wrapper's hook has run at its own level
        return
    expected = module.state_dict()
    if not describe_mismatch(expected, state_dict):
        return  # already this model's own layout, every key fits
    where = 'the checkpoint given to this MMagic model (load_from / init_cfg / test CHECKPOINT)'
    sd, used = extract_state_dict(_layout(state_dict), module.load_param_key, where)
    converted = {GENERATOR + k: v for k, v in sd.items()}
    for key, value in expected.items():  # non-generator state (none in MMagic 1.2.0's SR models)
        if not key.startswith(GENERATOR) and key not in converted:
            converted[key] = value
    problem = describe_mismatch(expected, converted)
    if problem:
        raise CheckpointError(f'{where} [{used or "state dict"}] does not fit {type(module.generator).__name__}: '
                              f'{problem}.')
    print_log(f'agile_ir.BaseEditModel: loaded {len(sd)} generator tensors from the '
              f'{used or "bare state dict"} weights of the checkpoint', logger='current', level=logging.INFO)
    metadata = getattr(state_dict, '_metadata', None)
    state_dict.clear()
    state_dict.update(converted)
    if metadata is not None:
        state_dict._metadata = metadata
