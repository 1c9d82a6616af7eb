"""``train.amp: bf16 | fp16``: mixed-precision training of any BasicSR model, as a precision context.

The loop runs ``model.optimize_parameters`` inside ``with precision:`` (``torch.autocast`` on the
model's device); nothing of the model is replaced.  Weights, optimizer and EMA stay fp32, only the
autocast ops (convolutions, matmuls) run in half precision; losses are on autocast's fp32 list.
One forward hook on ``net_g`` (torch's module-hook seam, registered once) returns the generator's
output in fp32 and, for fp16, registers ``GradScaler.scale`` on it, so the gradient is scaled where
it enters the network (the same as scaling a loss that depends on the weights only through
``net_g``'s output).  The ``StepGuard`` unscales before each step and updates the scaler after it;
an overflow step is skipped and counted.  The scaler's state is part of the training state, so a
resumed fp16 run is exact.  fp16 needs a model with one optimizer (GAN models step two): use bf16.
"""
import contextlib

import torch

from .preflight import InputError

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


class MixedPrecision(contextlib.AbstractContextManager):
    """``with precision:`` = autocast(mode) on ``device_type``; ``scaler``: fp16's GradScaler or None."""

    def __init__(self, mode, device_type):
        if mode not in AMP_DTYPES:
            raise InputError(f'train.amp: {mode!r} is not one of {", ".join(AMP_DTYPES)} (or leave it unset for fp32).')
        self.mode, self.dtype, self.device_type = mode, AMP_DTYPES[mode], device_type
        self.scaler = torch.amp.GradScaler(device_type) if mode == 'fp16' else None
        self._autocast = None

    def attach(self, model):
        """Check the model can use this mode and register the output hook on ``model.net_g``."""
        if self.scaler is not None and len(model.optimizers) != 1:
            raise InputError(f'train.amp: fp16 supports models with one optimizer, got {len(model.optimizers)} '
                             f'({type(model).__name__}); use amp: bf16.')
        model.net_g.register_forward_hook(self._output_hook)

    def _output_hook(self, module, args, output):
        if not torch.is_tensor(output):
            return None
        output = output.float()
        if self.scaler is not None and output.requires_grad:
            output.register_hook(self.scaler.scale)
        return output

    def __enter__(self):
        self._autocast = torch.autocast(self.device_type, dtype=self.dtype)
        return self._autocast.__enter__()

    def __exit__(self, *exc):
        autocast, self._autocast = self._autocast, None
        return autocast.__exit__(*exc)

    def describe(self):
        return (f'Mixed precision: optimize_parameters under autocast({self.mode}) on {self.device_type}'
                + (', GradScaler' if self.scaler is not None else '') + '.')

    def state_dict(self):
        return {'mode': self.mode, 'scaler': self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state):
        if state and self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])


def build_precision(opt, device_type):
    """``MixedPrecision`` for ``train.amp``, or a no-op context for fp32."""
    mode = opt['train'].get('amp')
    return MixedPrecision(mode, device_type) if mode else None
