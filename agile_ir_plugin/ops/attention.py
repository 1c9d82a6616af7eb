"""One attention function, many backends: archs say *what* they attend, this module says *how*.

``attention(q, k, v, bias=None, backend='auto', scale=None)`` computes
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
- ``chunked``: exact flash-style attention in plain PyTorch, for any device, dtype, head dims and
  bias.  The forward keeps only ``out`` and the row log-sum-exp (on CPU it runs PyTorch's fused
  CPU flash kernel when ``Dqk == Dv``); the backward recomputes the probabilities a few windows at
  a time (at most ``CHUNK_ELEMENTS`` scores at once) and returns gradients for q, k, v and the
  bias.  This is what training with a *learnable* bias needs on CPU: PyTorch's CPU flash kernel
  refuses a bias that requires grad and SDPA then silently runs its N x N math path.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention``; PyTorch picks the kernel (flash,
  memory-efficient, cuDNN, CPU flash, or its math path when none accepts the inputs).
- ``flex``: ``torch.nn.attention.flex_attention`` with the bias added through ``score_mod``.
  Compiled with ``torch.compile`` on CUDA; eager (unfused, forward only) elsewhere, because
  FlexAttention has no CPU backward.  Opt-in: ``auto`` never picks it (compilation can be slow or
  unavailable).
- ``flash_attn``: the ``flash_attn`` package (CUDA, fp16/bf16, ``Dqk == Dv <= 256``).  It takes no
  additive bias, so **with a bias it is not used**: the call goes to what ``auto`` picks for the
  same inputs (on CUDA: SDPA, whose memory-efficient / cuDNN kernels take an additive bias and
  return its gradient).  We do not approximate the bias (e.g. low rank): outputs stay exact.

Selection
---------
``auto`` (default) picks, for the inputs at hand:

- CUDA: ``flash_attn`` when installed and it supports the inputs (no bias, fp16/bf16, equal head
  dims), else ``sdpa``.
- other devices (CPU): ``sdpa`` when PyTorch's fused CPU kernel accepts the inputs (equal head
  dims, and no bias that needs a gradient while autograd records), else ``chunked``.

If a fused kernel (``sdpa``, ``flex``, ``flash_attn``) still raises at run time (no kernel for
these inputs, compilation failure; not out-of-memory), the call falls back to ``chunked``.  An explicit
backend that cannot take the inputs (``flash_attn`` not installed / with a bias / in fp32,
``flex`` needing a CPU backward) falls back to what ``auto`` picks, with a one-time warning;
``resolve_backend`` tells which backend will run.  Unknown names raise ``ValueError``.
"""
import math
import warnings

import torch
import torch.nn.functional as F

try:  # PyTorch >= 2.5
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention
except ImportError:  # pragma: no cover - old PyTorch
    _flex_attention = None

try:  # optional: https://github.com/Dao-AILab/flash-attention
    from flash_attn import flash_attn_func as _flash_attn_func
except Exception:  # ImportError, or a build that does not match this torch
    _flash_attn_func = None

BACKENDS = ('naive', 'chunked', 'sdpa', 'flex', 'flash_attn')

#: Largest number of attention scores the ``chunked`` backend materialises at once (per chunk):
#: 2**19 fp32 scores = 2 MiB, small enough to stay in cache (measured fastest on CPU).
CHUNK_ELEMENTS = 2 ** 19
CUDA_CHUNK_ELEMENTS = 2 ** 25  # GPUs: fewer, larger kernels

_CPU_FLASH = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)
_WARNED = set()
_LOG2E = math.log2(math.e)


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


def _unsupported_reason(name, q, bias, dv):
    """Why backend ``name`` cannot run these inputs (None when it can)."""
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
    return None


def _auto(q, bias, dv):
    if q.device.type == 'cuda':
        return 'flash_attn' if _unsupported_reason('flash_attn', q, bias, dv) is None else 'sdpa'
    same_dims = dv == q.shape[-1]
    if same_dims and not _bias_needs_grad(bias) and q.dtype in (torch.float32, torch.bfloat16, torch.float16,
                                                                  torch.float64):
        return 'sdpa'  # PyTorch's fused CPU flash kernel accepts these inputs
    return 'chunked'


def available_backends():
    """Backends that can run in this process (``flash_attn`` only with the package and CUDA)."""
    names = ['naive', 'chunked', 'sdpa']
    if _flex_attention is not None:
        names.append('flex')
    if _flash_attn_func is not None and torch.cuda.is_available():
        names.append('flash_attn')
    return names


def resolve_backend(backend, q, bias=None, v=None):
    """The backend that ``attention(q, k, v, bias, backend)`` will run (``v`` gives Dv; Dv = Dqk if None)."""
    if backend != 'auto' and backend not in BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; expected 'auto' or one of {BACKENDS}.")
    dv = q.shape[-1] if v is None else v.shape[-1]
    if backend == 'auto':
        return _auto(q, bias, dv)
    reason = _unsupported_reason(backend, q, bias, dv)
    if reason is None:
        return backend
    fallback = _auto(q, bias, dv)
    _warn_once((backend, reason), f"attention backend {backend!r} cannot run these inputs ({reason}); "
                                  f"using {fallback!r} instead.")
    return fallback


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


def sdpa_attention(q, k, v, bias=None, scale=None):
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


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
    if not _COMPILED_FLEX:
        _COMPILED_FLEX.append(torch.compile(_flex_attention, dynamic=False))
    return _COMPILED_FLEX[0]


def flash_attn_attention(q, k, v, bias=None, scale=None):
    """flash_attn takes (B, N, H, D); bias must be None (see the module docstring)."""
    assert bias is None, 'flash_attn takes no bias; resolve_backend routes biased calls elsewhere'
    out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale)
    return out.transpose(1, 2)


def _blocks(b, h, nq, nk, device):
    """Chunks of the (batch, query rows) space holding <= CHUNK_ELEMENTS scores (CUDA: more):
    whole windows while they fit (measured fastest on CPU), else blocks of query rows."""
    limit = CHUNK_ELEMENTS if device.type == 'cpu' else CUDA_CHUNK_ELEMENTS
    rows = nq if h * nq * nk <= limit else max(1, limit // (h * nk))
    batch = max(1, limit // (h * rows * nk))
    for b0 in range(0, b, batch):
        for r0 in range(0, nq, rows):
            yield slice(b0, min(b, b0 + batch)), slice(r0, min(nq, r0 + rows))


def _bias_block_index(bias4, bs, rs):
    """Index of a chunk's rows in the 4-D bias; broadcast dims of size 1 are kept whole."""
    return (bs if bias4.shape[0] > 1 else slice(None), slice(None), rs if bias4.shape[2] > 1 else slice(None))


def _bias_block(bias4, bs, rs):
    return bias4[_bias_block_index(bias4, bs, rs)]


class _ChunkedAttention(torch.autograd.Function):
    """Exact attention keeping (q, k, v, bias, out, lse) for backward instead of the N x N matrices."""

    @staticmethod
    def forward(ctx, q, k, v, bias4, scale):
        b, h, nq, _ = q.shape
        nk = k.shape[2]
        acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in >= fp32
        out = lse = None
        if _CPU_FLASH is not None and q.device.type == 'cpu' and v.shape[-1] == q.shape[-1]:
            try:
                mask = None if bias4 is None else bias4.to(q.dtype)
                out, lse = _CPU_FLASH(q, k, v, 0.0, False, attn_mask=mask, scale=scale)
            except RuntimeError:
                out = lse = None
        if out is None:
            out = q.new_empty(b, h, nq, v.shape[-1])
            lse = q.new_empty(b, h, nq, dtype=acc)
            for bs, rs in _blocks(b, h, nq, nk, q.device):
                s = (q[bs, :, rs].to(acc) @ k[bs].to(acc).transpose(-2, -1)) * scale
                if bias4 is not None:
                    s = s + _bias_block(bias4, bs, rs).to(acc)
                row_lse = torch.logsumexp(s, dim=-1, keepdim=True)
                out[bs, :, rs] = (torch.exp(s - row_lse) @ v[bs].to(acc)).to(out.dtype)
                lse[bs, :, rs] = row_lse.squeeze(-1)
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, bias4, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias4, out, lse = ctx.saved_tensors
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        b, h, nq, _ = q.shape
        nk = k.shape[2]
        acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in >= fp32
        # Row terms folded into the GEMMs by one extra column (saves two passes over the scores),
        # exponentials in base 2 (several times cheaper than exp on CPU):
        #   p  = exp(s + bias - lse) = exp2([q*scale*log2e, -lse*log2e] @ [k, 1]^T + bias*log2e)
        #   ds = p * (dp - delta),  dp - delta = [dO, -delta] @ [v, 1]^T,  delta_i = <dO_i, O_i>
        grad_out = grad_out.to(acc)
        delta = (grad_out * out.to(acc)).sum(-1, keepdim=True)
        q_s = q.to(acc) * ctx.scale
        q_aug = torch.cat([q_s * _LOG2E, lse.to(acc).unsqueeze(-1) * -_LOG2E], dim=-1)
        g_aug = torch.cat([grad_out, -delta], dim=-1)
        # keys/values transposed once, so every GEMM below reads its big operand row-major
        k_aug_t = torch.cat([k.to(acc), k.new_ones(k.shape[:-1] + (1,), dtype=acc)], dim=-1).transpose(-2, -1).contiguous()
        v_aug_t = torch.cat([v.to(acc), v.new_ones(v.shape[:-1] + (1,), dtype=acc)], dim=-1).transpose(-2, -1).contiguous()
        k_acc = k.to(acc)
        dq = torch.empty(q.shape, dtype=acc, device=q.device) if need_q else None
        dk_t = q.new_zeros((b, h, q.shape[-1], nk), dtype=acc) if need_k else None  # dk, dv kept transposed
        dv_t = q.new_zeros((b, h, v.shape[-1], nk), dtype=acc) if need_v else None
        dbias = torch.empty(bias4.shape, dtype=acc, device=bias4.device) if need_bias else None
        blocks = list(_blocks(b, h, nq, nk, q.device))
        size = max((bs.stop - bs.start) * (rs.stop - rs.start) for bs, rs in blocks) * h * nk
        p_buf, ds_buf = q.new_empty(size, dtype=acc), q.new_empty(size, dtype=acc)  # reused by every chunk
        for bs, rs in blocks:
            shape = (bs.stop - bs.start, h, rs.stop - rs.start, nk)
            n = shape[0] * shape[1] * shape[2] * shape[3]
            p = torch.matmul(q_aug[bs, :, rs], k_aug_t[bs], out=p_buf[:n].view(shape))
            if bias4 is not None:
                p.add_(_bias_block(bias4, bs, rs), alpha=_LOG2E)
            torch.exp2(p, out=p)
            if need_v:
                dv_t[bs] += grad_out[bs, :, rs].transpose(-2, -1) @ p
            ds = torch.matmul(g_aug[bs, :, rs], v_aug_t[bs], out=ds_buf[:n].view(shape))
            ds.mul_(p)  # dL/d(scores incl. bias)
            if need_bias:
                reduce_dims = [i for i in range(4) if bias4.shape[i] == 1 and ds.shape[i] != 1]
                part = ds.sum(reduce_dims, keepdim=True) if reduce_dims else ds
                first = (bias4.shape[0] > 1 or bs.start == 0) and (bias4.shape[2] > 1 or rs.start == 0)
                if first:  # every block of dbias is written once before it is accumulated into
                    dbias[_bias_block_index(bias4, bs, rs)] = part
                else:
                    dbias[_bias_block_index(bias4, bs, rs)] += part
            if need_q:
                dq[bs, :, rs] = ds @ k_acc[bs]
            if need_k:
                dk_t[bs] += q_s[bs, :, rs].transpose(-2, -1) @ ds
        if need_q:
            dq *= ctx.scale
        dk = None if dk_t is None else dk_t.transpose(-2, -1)
        dv = None if dv_t is None else dv_t.transpose(-2, -1)
        return (None if dq is None else dq.to(q.dtype), None if dk is None else dk.to(k.dtype),
                None if dv is None else dv.to(v.dtype), None if dbias is None else dbias.to(bias4.dtype), None)


def chunked_attention(q, k, v, bias=None, scale=None):
    """Exact, memory-lean attention with gradients for q, k, v and bias (see module docstring)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bias4 = None
    if bias is not None:
        lead = 4 - bias.dim()
        bias4 = bias.reshape((1,) * lead + tuple(bias.shape))  # broadcast dims stay of size 1
    out = _ChunkedAttention.apply(q, k, v, bias4, scale)
    return out


_IMPLS = {'naive': naive_attention, 'chunked': chunked_attention, 'sdpa': sdpa_attention,
          'flex': flex_attention, 'flash_attn': flash_attn_attention}


def attention(q, k, v, bias=None, backend='auto', scale=None):
    """softmax(q k^T * scale + bias) v with the chosen backend (see module docstring)."""
    _check_inputs(q, k, v, bias)
    name = resolve_backend(backend, q, bias, v)
    if name in ('naive', 'chunked'):
        return _IMPLS[name](q, k, v, bias, scale)
    try:
        return _IMPLS[name](q, k, v, bias, scale)
    except torch.OutOfMemoryError:
        raise
    except Exception as err:  # kernel unavailable for these inputs / compilation failed (inputs were checked)
        _warn_once(('runtime', name, type(err).__name__),
                   f'attention backend {name!r} failed ({type(err).__name__}: {str(err)[:200]}); '
                   f"falling back to 'chunked'.")
        return chunked_attention(q, k, v, bias, scale)
