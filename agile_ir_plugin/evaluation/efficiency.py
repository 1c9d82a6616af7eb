"""Params, MACs, latency and peak memory of an SR model, as efficient-SR papers report them.

- ``params``: all parameters (``agile_ir_plugin.profiling.count_params``).
- ``macs_lr256``: multiply-accumulates of one forward on a 1x3x256x256 LR input, the NTIRE
  efficient-SR protocol; ``macs_720p``: for an output of 1280x720, i.e. an LR input of
  ``round(1280/s) x round(720/s)`` (MAC counting convention of SwinIR/ESC tables).  Counted by
  ``profiling.count_macs`` (``torch.utils.flop_counter``: convolutions, matmuls and attention);
  element-wise operations are not counted; inputs are padded to the model's window multiple as
  in inference, so the count is what actually runs.  FLOPs = 2 x MACs.
- ``latency_ms``: median of ``runs`` timed forwards after ``warmup`` on the LR 256x256 input,
  batch 1, on ``device`` (named in ``device_name``).
- ``memory_mb``: peak memory of that forward above what was allocated before it (weights and
  input excluded).  On CUDA: ``torch.cuda.max_memory_allocated``.  On CPU PyTorch keeps no
  allocator statistics, so the peak of the bytes held by live tensors created during the forward
  is tracked op by op (``LiveTensorBytes``); kernel-internal scratch buffers are not seen.
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from agile_ir_plugin import profiling

from .inference import pad_multiple_of, padded_forward

MEMORY_NOTE = {
    'cuda': 'CUDA max_memory_allocated above the pre-forward allocation',
    'cpu': 'CPU: peak bytes of live tensors created by the forward (op-level tracking; weights, input and '
           'kernel scratch buffers excluded)',
}


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created while the mode is active and still referenced.

    Every op output's storage is counted once when first seen and released when the last tensor
    seen using it is garbage collected; storages of ``external`` tensors (weights, inputs) and
    in-place results on them are ignored."""

    def __init__(self, external=()):
        super().__init__()
        self.external = {t.untyped_storage().data_ptr() for t in external}
        self.live = {}  # storage data_ptr -> [nbytes, referencing tensors]
        self.current = 0
        self.peak = 0

    def _release(self, ptr):
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == 'meta':
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in self.external:
                continue
            if ptr not in self.live:
                self.live[ptr] = [storage.nbytes(), 0]
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self.live[ptr][1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


@torch.no_grad()
def cpu_peak_bytes(fn, x, external=()):
    mode = LiveTensorBytes([x, *external])
    with mode:
        out = fn(x)
    del out
    return mode.peak


def hd_lr_size(scale, output=(1280, 720)):
    """(H, W) of the LR input whose x``scale`` output is ``output`` (W x H), rounded."""
    return round(output[1] / scale), round(output[0] / scale)


def measure(model, scale, device='cpu', lr_size=256, hd_output=(1280, 720), runs=10, warmup=2,
            pad_multiple=None, macs=True, timing=True, memory=True):
    """Efficiency row of ``model`` at ``scale`` (see the module docstring for each field)."""
    device = torch.device(device)
    model = model.to(device).eval()
    multiple = pad_multiple_of(model, pad_multiple)

    def fn(x):
        return padded_forward(model, x, scale, multiple)

    x = torch.rand(1, 3, lr_size, lr_size, device=device)
    row = {'params': profiling.count_params(model), 'device_name': profiling.device_name(device)}
    if macs:
        row['macs_lr256'] = profiling.count_macs(fn, x)
        hd = torch.rand(1, 3, *hd_lr_size(scale, hd_output), device=device)
        row['macs_720p'] = profiling.count_macs(fn, hd)
        row['macs_720p_input'] = f'{hd.shape[-1]}x{hd.shape[-2]}'
        del hd
    if timing:
        with torch.no_grad():
            row['latency_ms'] = 1000 * profiling.latency(fn, x, n=runs, warmup=warmup, device=device)
        row['latency_input'] = f'LR {lr_size}x{lr_size}, batch 1, median of {runs} after {warmup} warm-up'
    if memory:
        if device.type == 'cuda':
            with torch.no_grad():
                peak = profiling.peak_cuda_memory(fn, x, device=device)
        else:
            peak = cpu_peak_bytes(fn, x, external=[*model.parameters(), *model.buffers()])
        row['memory_mb'] = peak / 2 ** 20
        row['memory_note'] = MEMORY_NOTE['cuda' if device.type == 'cuda' else 'cpu']
    return row
