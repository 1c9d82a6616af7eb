"""Efficiency measurements shared by the benchmarks and the leaderboard (pure torch).

- ``count_params``: trainable + frozen parameters.
- ``count_macs``: multiply-accumulates of one forward via ``torch.utils.flop_counter`` (it counts
  matmuls, convolutions and SDPA, i.e. attention is included); FLOPs = 2 x MACs.
- ``saved_activation_bytes``: bytes autograd keeps for backward in one forward (deterministic
  CPU stand-in for training memory), via ``torch.autograd.graph.saved_tensors_hooks``; storages
  shared by several saved tensors (e.g. a parameter saved by two ops) are counted once.
- ``latency``: median wall time of ``n`` runs after ``warmup`` runs, synchronising CUDA.
- ``peak_memory``: ``torch.cuda.max_memory_allocated`` delta on CUDA; on CPU the saved-activation
  bytes of a training forward, or None for inference (said so by the caller).
"""
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_params(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model, *inputs):
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def saved_activation_bytes(fn, *inputs, exclude_params=True, model=None):
    """Bytes saved for backward while running ``fn(*inputs)`` (grad enabled).

    Parameters of ``model`` (if given and ``exclude_params``) are not counted: they exist whether
    or not a step is taken.  Returns (bytes, output).
    """
    seen = {}
    param_ptrs = set()
    if model is not None and exclude_params:
        param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in param_ptrs and ptr not in seen:
                seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    return sum(seen.values()), out


def _sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def latency(fn, *inputs, n=10, warmup=2, device='cpu'):
    """Median seconds of ``n`` calls of ``fn(*inputs)`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn(*inputs)
    _sync(device)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn(*inputs)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_cuda_memory(fn, *inputs, device='cuda'):
    """Peak bytes allocated above the starting point while running ``fn`` once (CUDA only)."""
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn(*inputs)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def device_name(device='cpu'):
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    import platform
    try:
        import os
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = torch.get_num_threads()
    threads = torch.get_num_threads()
    return (f'CPU {platform.processor() or platform.machine()} ({cores} core{"s" * (cores != 1)}, '
            f'{threads} thread{"s" * (threads != 1)})')
