"""One attention function, many backends: archs say *what* they attend, this module says *how*.

``attention(q, k, v, bias=None, backend='auto')`` computes ``softmax(q @ k^T * scale + bias) @ v``
for ``q, k: (B, H, N, Dqk)``, ``v: (B, H, N, Dv)`` and an additive float ``bias`` broadcastable to
``(B, H, N, N)`` (relative-position bias, shift mask as large negative values, or both summed).

Backends:
- ``naive``: the reference: explicit matmul + softmax (stores the N x N matrix for backward).
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``; PyTorch picks flash /
  memory-efficient / cuDNN / CPU kernels.  With a bias only the kernels that accept an additive
  mask are eligible (memory-efficient, cuDNN, CPU flash), never the N x N math path by choice.
- ``auto`` (default): the fastest backend that supports the inputs on this device and dtype,
  falling back to ``naive`` rather than raising.
"""
import torch
import torch.nn.functional as F

BACKENDS = ('naive', 'sdpa')


def naive_attention(q, k, v, bias=None, scale=None):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    attn = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    attn = attn.softmax(dim=-1)
    return attn @ v


def sdpa_attention(q, k, v, bias=None, scale=None):
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


_IMPLS = {'naive': naive_attention, 'sdpa': sdpa_attention}


def available_backends():
    return [name for name in BACKENDS]


def resolve_backend(backend, q, bias=None):
    if backend != 'auto':
        if backend not in _IMPLS:
            raise ValueError(f"Unknown attention backend {backend!r}; expected 'auto' or one of {BACKENDS}.")
        return backend
    return 'sdpa'


def attention(q, k, v, bias=None, backend='auto', scale=None):
    """softmax(q k^T * scale + bias) v with the chosen backend (see module docstring)."""
    name = resolve_backend(backend, q, bias)
    if name == 'naive':
        return naive_attention(q, k, v, bias, scale)
    try:
        return _IMPLS[name](q, k, v, bias, scale)
    except RuntimeError:
        if backend != 'auto':
            raise
        return naive_attention(q, k, v, bias, scale)
