"""One attention function, many backends: archs say *what* they attend, this module says *how*.

``attention(q, k, v, bias=None, backend='auto', scale=None, fallback=False)`` computes
``softmax(q @ k^T * scale + bias) @ v`` for ``q: (B, H, Nq, Dqk)``, ``k: (B, H, Nk, Dqk)``,
``v: (B, H, Nk, Dv)`` (``Dv`` may differ from ``Dqk``) and an additive float ``bias``
broadcastable to ``(B, H, Nq, Nk)`` (relative-position bias, a shift mask as large negative
values, or both summed).  ``scale`` defaults to ``Dqk ** -0.5``.  Every backend computes the same
function and the same gradients (for q, k, v *and* a learnable bias); they differ in speed and in
what they keep for backward.

Backends
--------
- ``naive``: the reference: explicit matmul + softmax.  Keeps the ``(B, H, Nq, Nk)``
  probability matrix for backward.
- ``chunked``: exact flash-style attention in plain PyTorch (``ops/chunked.py``), for any device,
  dtype, head dims and bias; keeps ``out`` and the row log-sum-exp, recomputes the rest in chunks.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` restricted to PyTorch's *fused*
  kernels (never its N x N math path, which is what ``naive`` is): on CUDA flash (no bias),
  memory-efficient and cuDNN (both take an additive bias and return its gradient); on CPU the
  fused CPU flash kernel (which takes a bias, but not one that needs a gradient).  On CUDA the
  head dims are zero-padded to a multiple of 8 when that lets a fused kernel take them (zero
  channels change no score and no gradient).
- ``flex``: ``torch.nn.attention.flex_attention`` with the bias read inside ``score_mod``, as the
  official ESC does; compiled (``torch.compile(dynamic=True)``) on CUDA; eager (unfused, forward
  only) elsewhere, because FlexAttention has no CPU backward.
- ``flash_attn``: the ``flash_attn`` package (CUDA, fp16/bf16, ``Dqk == Dv <= 256``) for calls
  **without** a bias only.  ESC and AgileIR always pass a relative-position bias, so they never
  run it (a low-rank or dropped bias would change the function); it serves bias-free callers.

Selection (``auto``, the default), for the inputs at hand
---------------------------------------------------------
- CUDA: ``flash_attn`` when installed and the call has no bias (fp16/bf16, equal head dims);
  else ``sdpa`` when PyTorch says one of its fused kernels takes the inputs (asked through
  ``torch.backends.cuda.can_use_*_attention``); else ``chunked``.  FlexAttention is never picked
  by ``auto`` (its first call compiles); ask for it with ``backend='flex'``.
- other devices (CPU): ``sdpa`` when the fused CPU kernel takes the inputs (equal head dims, no
  bias that needs a gradient while autograd records), else ``chunked``.

``choose_backend`` returns the backend *and the reason*; ``auto`` logs both once per kind of
input on the ``agile_ir_plugin.ops.attention`` logger (INFO).  An explicit backend that cannot
take the inputs (``flash_attn`` not installed / with a bias / in fp32, ``flex`` needing a CPU
backward, ``sdpa`` where no fused kernel fits) runs what ``auto`` picks, with a one-time warning.

A fused kernel (``sdpa``, ``flex``, ``flash_attn``) that still raises at run time (no kernel,
compilation failure; not out-of-memory) is an **error** naming the backend and the inputs,
unless the caller allowed the fallback (``fallback=True``; the archs' ``attn_fallback`` option):
then the call runs ``chunked`` (exact) with a one-time warning.  Unknown names raise ``ValueError``.
"""
import logging
import warnings

import torch
import torch.nn.functional as F

from .chunked import chunked_attention, hankel_flash_forward
from .window import HankelBias

try:  # PyTorch >= 2.5
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention
except ImportError:  # pragma: no cover - old PyTorch
    _flex_attention = None

try:  # optional: https://github.com/Dao-AILab/flash-attention
    from flash_attn import flash_attn_func as _flash_attn_func
except Exception:  # ImportError, or a build that does not match this torch
    _flash_attn_func = None

BACKENDS = ('naive', 'chunked', 'sdpa', 'flex', 'flash_attn')
HEAD_DIM_ALIGN = 8  # CUDA SDPA: head dims zero-padded to this multiple when that admits a fused kernel

logger = logging.getLogger(__name__)
_WARNED = set()
_LOGGED = set()


# --------------------------------------------------------------------------------------------
# input checks and helpers
# --------------------------------------------------------------------------------------------
def _check_inputs(q, k, v, bias):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f'attention expects 4-D q, k, v of shape (B, H, N, D); got q {tuple(q.shape)}, '
                         f'k {tuple(k.shape)}, v {tuple(v.shape)}.')
    b, h, nq, d = q.shape
    if k.shape[:2] != (b, h) or v.shape[:2] != (b, h) or k.shape[-1] != d or k.shape[2] != v.shape[2]:
        raise ValueError(f'attention shape mismatch: q {tuple(q.shape)} needs k (B, H, Nk, {d}) and v (B, H, Nk, Dv) '
                         f'with the same B, H, Nk; got k {tuple(k.shape)}, v {tuple(v.shape)}.')
    if bias is not None:
        try:
            torch.broadcast_shapes(bias.shape, (b, h, nq, k.shape[2]))
        except RuntimeError:
            raise ValueError(f'attention bias of shape {tuple(bias.shape)} does not broadcast to '
                             f'(B, H, Nq, Nk) = {(b, h, nq, k.shape[2])}.') from None
        if bias.dtype == torch.bool:
            raise ValueError('attention takes an additive float bias; turn a boolean mask into one with '
                             "bias = torch.zeros(mask.shape).masked_fill(~mask, float('-inf')).")


def _bias_needs_grad(bias):
    return bias is not None and bias.requires_grad and torch.is_grad_enabled()


def _warn_once(key, message):
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, stacklevel=3)


def describe_inputs(q, k, v, bias):
    """'q (B, H, N, D) bfloat16 on cuda:0, k ..., v ..., bias (1, H, N, N) (requires grad)'."""
    def one(name, t):
        if t is None:
            return f'{name} None'
        grad = ' (requires grad)' if t.requires_grad and torch.is_grad_enabled() else ''
        return f'{name} {tuple(t.shape)}{grad}'
    return (f'{one("q", q)}, {one("k", k)}, {one("v", v)}, {one("bias", bias)}; '
            f'{str(q.dtype).replace("torch.", "")} on {q.device}')


def _padded(t, multiple=HEAD_DIM_ALIGN):
    d = t.shape[-1]
    return t if d % multiple == 0 else F.pad(t, (0, -d % multiple))


_PROBED = {}


def _cuda_fused_sdpa_kernels(q, k, v, bias):
    """PyTorch's fused CUDA SDPA kernels that take these inputs (head dims padded to a multiple of
    ``HEAD_DIM_ALIGN``), in PyTorch's order of preference; asked, not guessed, once per kind of
    input (shapes, dtype, device, bias, grad mode), on empty tensors of the same metadata."""
    grad = torch.is_grad_enabled()
    key = (tuple(q.shape), tuple(k.shape), tuple(v.shape), q.dtype, str(q.device), grad,
           grad and q.requires_grad, None if bias is None else (tuple(bias.shape), tuple(bias.stride()),
                                                                  grad and bias.requires_grad))
    if key not in _PROBED:
        def like(t):
            shape = t.shape[:-1] + (t.shape[-1] + -t.shape[-1] % HEAD_DIM_ALIGN,)
            return torch.empty(shape, dtype=q.dtype, device=t.device).requires_grad_(grad and t.requires_grad)
        mask = None if bias is None else torch.empty_strided(
            bias.shape, bias.stride(), dtype=q.dtype, device=bias.device).requires_grad_(grad and bias.requires_grad)
        cuda = torch.backends.cuda
        params = cuda.SDPAParams(like(q), like(k), like(v), mask, 0.0, False, False)
        probes = (('flash', getattr(cuda, 'can_use_flash_attention', None)),
                  ('cudnn', getattr(cuda, 'can_use_cudnn_attention', None)),
                  ('memory-efficient', getattr(cuda, 'can_use_efficient_attention', None)))
        kernels = []
        with warnings.catch_warnings():  # each refusal warns its reason: the caller reports one line
            warnings.simplefilter('ignore')
            for name, probe in probes:
                if probe is not None and (name != 'flash' or bias is None) and probe(params, False):
                    kernels.append(name)
        _PROBED[key] = kernels
    return _PROBED[key]


def _unsupported_reason(name, q, k, v, bias):
    """Why backend ``name`` cannot run these inputs (None when it can)."""
    dv = v.shape[-1]
    grad = torch.is_grad_enabled() and (q.requires_grad or _bias_needs_grad(bias))  # k, v: see flex_attention
    if name == 'flash_attn':
        if _flash_attn_func is None:
            return 'the flash_attn package is not installed (pip install flash-attn)'
        if bias is not None:
            return 'flash_attn takes no additive bias'
        if dv != q.shape[-1] or dv > 256:
            return 'flash_attn needs Dqk == Dv <= 256'
        if q.device.type != 'cuda':
            return 'flash_attn runs on CUDA only'
        if q.dtype not in (torch.float16, torch.bfloat16):
            return f'flash_attn needs fp16/bf16 inputs, got {q.dtype}'
        return None
    if name == 'flex':
        if _flex_attention is None:
            return 'FlexAttention needs PyTorch >= 2.5'
        if q.device.type != 'cuda' and grad:
            return 'FlexAttention has no backward on CPU'
        return None
    if name == 'sdpa':
        if q.device.type == 'cuda':
            if not torch.compiler.is_compiling() and not _cuda_fused_sdpa_kernels(q, k, v, bias):
                return 'no fused CUDA SDPA kernel (flash, cuDNN, memory-efficient) takes these inputs'
            return None
        if dv != q.shape[-1]:
            return "the fused CPU SDPA kernel needs Dqk == Dv"
        if _bias_needs_grad(bias):
            return ('the fused CPU SDPA kernel takes no bias that needs a gradient '
                    '(SDPA would run its N x N math path)')
        return None
    return None


def _auto(q, k, v, bias):
    """(backend, reason) of ``auto`` for these inputs."""
    if q.device.type == 'cuda':
        if bias is None and _unsupported_reason('flash_attn', q, k, v, bias) is None:
            return 'flash_attn', 'no bias, half precision, equal head dims: the flash_attn package'
        # traced by torch.compile: no probe (a C++ call Dynamo cannot trace: a graph break); the
        # compiled SDPA (fused kernels only, head dims padded) raises if none takes the inputs
        kernels = ['compiled'] if torch.compiler.is_compiling() else _cuda_fused_sdpa_kernels(q, k, v, bias)
        if kernels:
            return 'sdpa', (f"fused SDPA kernel ({' / '.join(kernels)}) takes the inputs"
                            + (' and the additive bias (with its gradient)' if bias is not None else ''))
        return 'chunked', ('no fused CUDA SDPA kernel takes these inputs; exact flash-style attention '
                           'in PyTorch (keeps out + log-sum-exp only)')
    why = _unsupported_reason('sdpa', q, k, v, bias)
    if why is None:
        return 'sdpa', 'the fused CPU flash kernel takes the inputs'
    return 'chunked', why + '; exact flash-style attention in PyTorch (keeps out + log-sum-exp only)'


def available_backends():
    """Backends that can run in this process (``flash_attn`` only with the package and CUDA)."""
    names = ['naive', 'chunked', 'sdpa']
    if _flex_attention is not None:
        names.append('flex')
    if _flash_attn_func is not None and torch.cuda.is_available():
        names.append('flash_attn')
    return names


def choose_backend(backend, q, bias=None, v=None, k=None):
    """``(name, reason)``: the backend ``attention(q, k, v, bias, backend)`` runs and why
    (``v`` gives Dv, ``k`` defaults to ``q``'s shape)."""
    if backend != 'auto' and backend not in BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; expected 'auto' or one of {BACKENDS}.")
    k = q if k is None else k
    v = q if v is None else v
    if backend == 'auto':
        return _auto(q, k, v, bias)
    reason = _unsupported_reason(backend, q, k, v, bias)
    if reason is None:
        return backend, 'asked for'
    fallback, why = _auto(q, k, v, bias)
    _warn_once((backend, reason), f"attention backend {backend!r} cannot run these inputs ({reason}); "
                                  f"using {fallback!r} instead ({why}).")
    return fallback, f'{backend!r} cannot run these inputs ({reason}); {why}'


def resolve_backend(backend, q, bias=None, v=None, k=None):
    """The backend that ``attention(q, k, v, bias, backend)`` will run (see ``choose_backend``)."""
    return choose_backend(backend, q, bias, v, k)[0]


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
def naive_attention(q, k, v, bias=None, scale=None):
    """The reference: softmax(q k^T * scale + bias) v with every intermediate materialised."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    attn = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    attn = attn.softmax(dim=-1)
    return attn @ v


def _fused_sdpa_backends(device_type):
    from torch.nn.attention import SDPBackend
    if device_type == 'cuda':
        return [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    return [SDPBackend.FLASH_ATTENTION]  # CPU: the fused flash kernel


def sdpa_attention(q, k, v, bias=None, scale=None):
    """SDPA restricted to fused kernels (raises "No available kernel" rather than running math)."""
    from torch.nn.attention import sdpa_kernel
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if isinstance(bias, HankelBias):  # CPU: the fused flash kernel by blocks of query rows, no dense bias
        out, _ = hankel_flash_forward(q, k, v, bias.table.to(bias.dtype), bias.window_size, scale)
        if out is None:
            raise RuntimeError('the fused CPU flash kernel refused the inputs')
        return out
    if bias is not None:
        bias = bias.to(q.dtype)
        if not torch.is_grad_enabled():  # the CPU kernel checks requires_grad, not the grad mode
            bias = bias.detach()
    dv = v.shape[-1]
    if q.device.type == 'cuda':  # zero channels: the same scores, the same gradients
        q, k, v = _padded(q), _padded(k), _padded(v)
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():  # the exported op picks its kernel
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    else:
        with sdpa_kernel(_fused_sdpa_backends(q.device.type)):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    return out if out.shape[-1] == dv else out[..., :dv]


def flex_attention(q, k, v, bias=None, scale=None):
    """FlexAttention with the bias read inside ``score_mod`` (compiled on CUDA, eager elsewhere)."""
    score_mod = None
    if bias is not None:
        full = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])  # a view (stride 0), no copy

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + full[b, h, q_idx, kv_idx]
    if q.device.type == 'cuda':
        return _compiled_flex()(q, k, v, score_mod=score_mod, scale=scale)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, bias)):
        raise NotImplementedError('FlexAttention has no backward on CPU')
    q, k, v = q.detach(), k.detach(), v.detach()  # it refuses inputs that require grad even under no_grad
    if bias is not None:
        full = full.detach()
    with warnings.catch_warnings():  # eager FlexAttention warns that it is unfused: we know
        warnings.simplefilter('ignore', UserWarning)
        return _flex_attention(q, k, v, score_mod=score_mod, scale=scale)


_COMPILED_FLEX = []


def _compiled_flex():
    if not _COMPILED_FLEX:  # as the official ESC: one compiled kernel for every number of windows
        _COMPILED_FLEX.append(torch.compile(_flex_attention, dynamic=True))
    return _COMPILED_FLEX[0]


def flash_attn_attention(q, k, v, bias=None, scale=None):
    """flash_attn takes (B, N, H, D); bias must be None (see the module docstring)."""
    assert bias is None, 'flash_attn takes no bias; choose_backend routes biased calls elsewhere'
    out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale)
    return out.transpose(1, 2)


_IMPLS = {'naive': naive_attention, 'chunked': chunked_attention, 'sdpa': sdpa_attention,
          'flex': flex_attention, 'flash_attn': flash_attn_attention}


class FusedAttentionError(RuntimeError):
    """A fused attention kernel failed at run time and the fallback was not allowed."""


def _log_choice(name, reason, q, k, v, bias):
    key = (q.device.type, q.dtype, bias is not None, _bias_needs_grad(bias), name)
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.info("attention backend 'auto' picked %r: %s (first call: %s)", name, reason,
                    describe_inputs(q, k, v, bias))


def attention(q, k, v, bias=None, backend='auto', scale=None, fallback=False):
    """softmax(q k^T * scale + bias) v with the chosen backend (see module docstring).

    ``fallback=True`` lets a fused kernel that fails at run time fall back to ``chunked`` (exact,
    one warning); by default that failure raises ``FusedAttentionError`` naming the inputs.

    ``bias`` may be a ``HankelBias`` (a relative-position bias as a view of its small table):
    ``chunked`` takes it as is and keeps neither the dense bias nor its gradient, CPU ``sdpa``
    copies it a block of query rows at a time; every other backend gets it copied out whole
    (``materialize()``)."""
    if isinstance(bias, HankelBias):
        # chosen on a stand-in of the same shape, dtype and grad requirement; on CUDA (whose fused
        # kernels are probed on the real bias's strides) and where no backend takes it as is: dense
        stand_in = bias.stand_in()
        _check_inputs(q, k, v, stand_in)
        name, reason = (None, None) if q.device.type == 'cuda' else choose_backend(backend, q, stand_in, v, k)
        takes_it = name == 'chunked' or (name == 'sdpa' and not torch.compiler.is_compiling())
        if not takes_it:
            return attention(q, k, v, bias.materialize(), backend, scale, fallback)
        log_bias = stand_in
    else:
        _check_inputs(q, k, v, bias)
        name, reason = choose_backend(backend, q, bias, v, k)
        log_bias = bias
    if backend == 'auto' and not torch.compiler.is_compiling():  # logging inside a graph: a graph break
        _log_choice(name, reason, q, k, v, log_bias)
    if name in ('naive', 'chunked'):
        return _IMPLS[name](q, k, v, bias, scale)
    try:
        return _IMPLS[name](q, k, v, bias, scale)
    except torch.OutOfMemoryError:
        raise
    except Exception as err:  # kernel unavailable for these inputs / compilation failed (inputs were checked)
        what = (f'attention backend {name!r} failed at run time for {describe_inputs(q, k, v, log_bias)} '
                f'({type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ""})')
        if not fallback:
            raise FusedAttentionError(
                f"{what}. Pass attn_fallback=True (arch option) / fallback=True to run the exact 'chunked' "
                f"backend instead, or choose another attn_backend.") from err
        _warn_once(('runtime', name, type(err).__name__), f"{what}; falling back to 'chunked' (allowed).")
        return chunked_attention(q, k, v, bias, scale)
