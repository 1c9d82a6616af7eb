"""AgileIR: SwinIR-light with Group Shifted Window Attention (GSWA), trained on a third of the memory.

Paper: Cai et al., "AgileIR: Memory-Efficient Group Shifted Windows Attention for Agile Image
Restoration", 2024.  The public code (XcloudFance/AgileIR, KAIR-based) does not run GSWA (its
attention forward returns its input and the shift mask is passed as None), so this module is
*our reading of the paper*, written from its text:

Skeleton (unchanged from SwinIR-light, Liang et al. 2021): shallow 3x3 conv -> patch LayerNorm ->
residual groups (``depths``) of transformer layers, each group closed by a conv and a skip ->
LayerNorm -> conv + long skip -> ``pixelshuffledirect`` (one conv + PixelShuffle).  Layers
alternate regular (W-MSA) and shifted (SW-MSA, shift = window // 2) windows; relative-position
biases are learnable and the shifted windows keep Swin's mask, so windows still interact.

Group Shifted Window Attention, as we read the paper:

- *Groups across the heads*: the ``num_heads`` heads are split into ``num_groups`` groups; group
  ``g`` reads only its own slice of ``embed_dim / num_groups`` channels and has its own, smaller
  Q/K/V projection (a block-diagonal projection: its params / groups; it runs as one matmul).
  The output projection stays a full ``embed_dim x embed_dim`` linear, so groups exchange
  information there (as in Swin's ``proj``) and in the MLP.
- *Re-allocated projection parameters*: Q and K are projected to ``qk_dim`` channels in total
  (``qk_dim / num_heads`` per head, the paper's Figure 4 axis), V keeps the full ``embed_dim``.
  The softmax scale is ``(qk_dim / num_heads) ** -0.5``.
- With ``num_groups=1`` and ``qk_dim=embed_dim`` GSWA is exactly Swin's W-MSA / SW-MSA, and the
  whole network is BasicSR's ``SwinIR`` (same parameter names and shapes); the tests load SwinIR
  weights into that configuration and compare outputs.

Beyond the paper, on memory (what autograd keeps for backward; see ``recompute``):

- The attention itself goes through ``agile_ir_plugin.ops.attention.attention`` with the
  relative-position bias and the shift mask summed into one additive bias, shaped so that it
  broadcasts over the batch (windows are folded into the head axis for shifted layers).
- With ``recompute=True`` (default) three cheap pieces are re-run in backward instead of being
  stored, each closed by a linear whose weight gradient is computed from the re-run input, so
  no matmul is repeated except the MLP's first linear:
  LayerNorm -> QKV (keeps the windowed layer input), window attention -> output projection
  (keeps the windowed Q/K/V only: the N x N attention matrix, its output and the merged heads
  are never stored), LayerNorm -> fc1 -> GELU -> fc2 (keeps the MLP input).  Per layer and token
  that is ``3 * embed_dim + 2 * qk_dim`` floats saved, against about 19 x embed_dim for
  SwinIR-light.  With ``attn_backend='auto'`` on CPU the attention then runs the materialised
  ``naive`` softmax (nothing of it is stored, and it is the fastest there); elsewhere ``auto``.
  In fp32 training on CPU with the ``naive`` backend (``auto`` there) attention + output projection
  are one hand-written autograd function, ``_WindowAttentionProj`` (windows in cache-sized
  chunks, in-place bias / softmax / softmax backward, CPU-BLAS-friendly operand layouts, no
  autograd graph re-built in backward): same values and gradients, a faster step.
- The cyclic shift + window partition (and their inverse) are one cached token permutation
  (a gather), the relative-position index is a buffer, and the shift mask and permutations are
  built once per padded input size and cached.
- Inputs whose size is not a multiple of the window are reflect-padded and the output cropped.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..ops.attention import attention
from ..ops.window import pad_to_multiple, relative_position_index, shifted_window_mask, window_partition

__all__ = ['AgileIR']


# --------------------------------------------------------------------------------------------
# Activation-cheap building block: a prefix re-run in backward, closed by a linear layer
# --------------------------------------------------------------------------------------------

class _RecomputedPrefixLinear(torch.autograd.Function):
    """``linear(prefix(*inputs), weight, bias)`` keeping only ``inputs`` for backward.

    In backward the prefix is re-run with autograd (it must be deterministic and take every
    tensor that needs a gradient, parameters included, through ``inputs``); the closing linear's
    gradients are computed directly from the re-run prefix output, so it is not repeated.
    """

    @staticmethod
    def forward(ctx, prefix, weight, bias, *inputs):
        ctx.prefix = prefix
        device = weight.device.type
        # backward usually runs outside the forward's autocast region: re-run the prefix under the
        # forward's autocast state, or its dtypes differ ("mat1 and mat2 must have the same dtype")
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.save_for_backward(weight, bias, *inputs)
        return F.linear(prefix(*inputs), weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        weight, bias, *inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        leaves = [t.detach().requires_grad_(n) if isinstance(t, torch.Tensor) else t for t, n in zip(inputs, needs)]
        device, enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
            hidden = ctx.prefix(*leaves)
        grad_w = grad_b = None
        g2d = grad_out.reshape(-1, grad_out.shape[-1])
        if ctx.needs_input_grad[1]:  # computed in the forward's compute dtype, returned in the weight's
            grad_w = (g2d.t() @ hidden.detach().reshape(-1, hidden.shape[-1]).to(g2d.dtype)).to(weight.dtype)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_b = g2d.sum(0).to(bias.dtype)
        grads = [None] * len(leaves)
        wanted = [i for i, n in enumerate(needs) if n]
        if wanted:
            grad_hidden = (grad_out @ weight.to(grad_out.dtype)).to(hidden.dtype)
            got = torch.autograd.grad(hidden, [leaves[i] for i in wanted], grad_hidden, allow_unused=True)
            for i, g in zip(wanted, got):
                grads[i] = g
        return (None, grad_w, grad_b, *grads)


def prefix_linear(prefix, inputs, weight, bias, recompute=True):
    """``F.linear(prefix(*inputs), weight, bias)``; with ``recompute`` only ``inputs`` are saved.

    Under ``torch.compile`` the same recomputation is expressed as a non-reentrant
    ``torch.utils.checkpoint`` of prefix + linear (the hand-written backward calls
    ``torch.autograd.grad``, which Dynamo cannot trace: a graph break per layer); the compiler's
    partitioner then re-runs the prefix in backward and drops the unneeded linear output."""
    tensors = [t for t in (*inputs, weight, bias) if isinstance(t, torch.Tensor)]
    if recompute and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        if torch.compiler.is_compiling():
            return checkpoint(_prefix_then_linear, prefix, weight, bias, *inputs, use_reentrant=False)
        return _RecomputedPrefixLinear.apply(prefix, weight, bias, *inputs)
    return F.linear(prefix(*inputs), weight, bias)


def _prefix_then_linear(prefix, weight, bias, *inputs):
    return F.linear(prefix(*inputs), weight, bias)


def _layer_norm(x, weight, bias):
    return F.layer_norm(x, x.shape[-1:], weight, bias, 1e-5)


def _norm_fc1_gelu(x, norm_w, norm_b, fc1_w, fc1_b):
    return F.gelu(F.linear(_layer_norm(x, norm_w, norm_b), fc1_w, fc1_b))


_SCORES_PER_CHUNK = 2 ** 18  # (N x N) scores per chunk of _WindowAttentionProj and per thread: 1 MiB in fp32


class _WindowAttentionProj(torch.autograd.Function):
    """``proj(window attention(qkv))`` of GSWA with the naive (materialised) softmax, keeping only
    ``qkv`` (and the parameters) for backward: what ``prefix_linear(_attend, ...)`` computes with
    the ``naive`` backend, with a hand-written backward instead of autograd over a re-run.

    ``qkv``: (B, nW, N, g * (2 * hg * dq + hg * dv)) windows, per group ``[q_g | k_g | v_g]``;
    ``table``: (L, heads) relative-position bias table gathered by ``index`` (N * N,);
    ``mask``: None (regular windows) or the (nW, N, N) shift mask (no gradient);
    ``dims``: (heads, groups, dq, dv).

    For speed on CPU (each choice measured; docs/benchmarks.md, "AgileIR (issue 16)"):

    - the windows run in chunks of about ``_SCORES_PER_CHUNK`` scores per thread, so that a chunk's scores
      stay in cache from their matmul through bias, mask, softmax (and, in backward, its
      gradient) to the matmuls that read them, instead of ~14 passes over all scores in memory;
    - the bias and mask are added and the softmax and its backward taken in place;
    - operand layouts suit CPU BLAS: a batched ``(N x N) @ (N x d)`` product with a thin ``d``
      (5 or 10 here) is 2-3x faster when the ``(N x d)`` operand is the transpose of a contiguous
      ``(d x N)`` tensor, so K, V and the output gradient are kept transposed (``k^T``, ``v^T``,
      ``dO^T`` contiguous) and ``dV`` is computed as ``dV^T = dO^T @ P``.
    """

    @staticmethod
    def _operands(qkv, dims, scale):
        """q * scale (B', N, dq), k^T (B', dq, N), v^T (B', dv, N) for B' = B * nW * heads."""
        b, nw, n, _ = qkv.shape
        heads, groups, dq, dv = dims
        hg = heads // groups
        per = qkv.view(b, nw, n, groups, -1)
        q, k, v = (t.unflatten(-1, (hg, -1)) for t in per.split([hg * dq, hg * dq, hg * dv], dim=-1))
        q_s = torch.mul(q.permute(0, 1, 3, 4, 2, 5), scale,
                        out=qkv.new_empty(b, nw, groups, hg, n, dq)).view(-1, n, dq)
        return q_s, k.permute(0, 1, 3, 4, 5, 2).reshape(-1, dq, n), v.permute(0, 1, 3, 4, 5, 2).reshape(-1, dv, n)

    @staticmethod
    def _chunks(b, nw, heads, n):
        """(slice of B', first window, last window + 1) per chunk, windows counted over all images;
        chunks of equal size (within one window), as few as the size per chunk allows (each op
        on a chunk is one parallel region)."""
        count = -(-b * nw * heads * n * n // (_SCORES_PER_CHUNK * torch.get_num_threads()))
        step = -(-b * nw // count)
        for w0 in range(0, b * nw, step):
            w1 = min(b * nw, w0 + step)
            yield slice(w0 * heads, w1 * heads), w0, w1

    @staticmethod
    def _probs(q_s, k_t, bias, mask, chunk):
        """Softmax probabilities (b', N, N) of one chunk."""
        rows, w0, w1 = chunk
        heads, n = bias.shape[:2]
        s = torch.bmm(q_s[rows], k_t[rows])
        s4 = s.view(-1, heads, n, n).add_(bias)
        if mask is not None:  # window w of the flattened batch has the mask of window w % nW
            nw, start = mask.shape[0], w0
            while start < w1:  # one add per image the chunk touches
                stop = min(w1, (start // nw + 1) * nw)
                s4[start - w0:stop - w0].add_(mask[start % nw:start % nw + stop - start].unsqueeze(1))
                start = stop
        return torch.ops.aten._softmax.out(s, -1, False, out=s)

    @staticmethod
    def _bias(table, index, heads, n):
        return table[index].view(n, n, heads).permute(2, 0, 1)  # heads, N, N

    @staticmethod
    def _merge(o, b, nw, n, heads):
        """(B', N, dv) per-head outputs -> (B * nW * N, heads * dv) merged heads."""
        return o.view(b, nw, heads, n, -1).transpose(2, 3).reshape(b * nw * n, -1)

    @staticmethod
    def forward(ctx, qkv, table, mask, weight, bias, index, dims, scale):
        b, nw, n, _ = qkv.shape
        heads, dv = dims[0], dims[3]
        q_s, k_t, v_t = _WindowAttentionProj._operands(qkv, dims, scale)
        # the operands are kept instead of qkv (the same number of floats; not copied out again)
        ctx.save_for_backward(q_s, k_t, v_t, table, mask, weight, bias)
        ctx.index, ctx.dims, ctx.scale, ctx.shape = index, dims, scale, qkv.shape  # index: a constant buffer's view
        pos = _WindowAttentionProj._bias(table, index, heads, n)
        o = qkv.new_empty(q_s.shape[0], n, dv)
        for chunk in _WindowAttentionProj._chunks(b, nw, heads, n):
            p = _WindowAttentionProj._probs(q_s, k_t, pos, mask, chunk)
            torch.bmm(p, v_t[chunk[0]].transpose(1, 2), out=o[chunk[0]])
        return F.linear(_WindowAttentionProj._merge(o, b, nw, n, heads), weight, bias).view(b, nw, n, -1)

    @staticmethod
    def backward(ctx, grad_out):
        q_s, k_t, v_t, table, mask, weight, bias = ctx.saved_tensors
        index = ctx.index
        b, nw, n, _ = ctx.shape
        heads, groups, dq, dv = ctx.dims
        hg = heads // groups
        need_w, need_inputs = ctx.needs_input_grad[3], ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        pos = _WindowAttentionProj._bias(table, index, heads, n)
        g2d = grad_out.reshape(-1, grad_out.shape[-1])
        o = q_s.new_empty(q_s.shape[0], n, dv) if need_w else None
        if need_inputs:
            d_o_t = (g2d @ weight).view(b, nw, n, heads, dv).permute(0, 1, 3, 4, 2).reshape(-1, dv, n)  # dO^T
            d_v_t, d_q, d_k_t = torch.empty_like(v_t), torch.empty_like(q_s), torch.empty_like(k_t)
            d_pos = pos.new_zeros(heads, n, n)
        for chunk in _WindowAttentionProj._chunks(b, nw, heads, n):
            rows = chunk[0]
            p = _WindowAttentionProj._probs(q_s, k_t, pos, mask, chunk)
            if need_w:
                torch.bmm(p, v_t[rows].transpose(1, 2), out=o[rows])
            if need_inputs:
                torch.bmm(d_o_t[rows], p, out=d_v_t[rows])
                d_s = torch.bmm(d_o_t[rows].transpose(1, 2), v_t[rows])
                d_s = torch.ops.aten._softmax_backward_data.out(d_s, p, -1, p.dtype, grad_input=d_s)  # d scores
                d_pos += d_s.view(-1, heads, n, n).sum(0)
                # q_s = q * scale, s = q_s @ k^T: dq = (ds @ k) * scale, dk^T = q_s^T @ ds
                torch.bmm(d_s, k_t[rows].transpose(1, 2), out=d_q[rows])
                torch.bmm(q_s[rows].transpose(1, 2), d_s, out=d_k_t[rows])
        grad_w = g2d.t() @ _WindowAttentionProj._merge(o, b, nw, n, heads) if need_w else None
        grad_b = g2d.sum(0) if bias is not None and ctx.needs_input_grad[4] else None
        grad_qkv = grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros_like(table).index_add_(0, index, d_pos.permute(1, 2, 0).reshape(n * n, heads))
        if ctx.needs_input_grad[0]:
            grad_qkv = q_s.new_empty(b, nw, n, groups, 2 * hg * dq + hg * dv)
            gq, gk, gv = (t.unflatten(-1, (hg, -1)) for t in grad_qkv.split([hg * dq, hg * dq, hg * dv], -1))
            torch.mul(d_q.view(b, nw, groups, hg, n, dq).permute(0, 1, 4, 2, 3, 5), ctx.scale, out=gq)
            gk.copy_(d_k_t.view(b, nw, groups, hg, dq, n).permute(0, 1, 5, 2, 3, 4))
            gv.copy_(d_v_t.view(b, nw, groups, hg, dv, n).permute(0, 1, 5, 2, 3, 4))
            grad_qkv = grad_qkv.view(ctx.shape)
        return grad_qkv, grad_table, None, grad_w, grad_b, None, None, None


class _PermuteTokens(torch.autograd.Function):
    """``x[:, perm]`` for ``x: (B, L, C)`` and a permutation ``perm`` of the L tokens (its inverse
    ``inv`` given): one gather forward, one gather backward (no scatter-add)."""

    @staticmethod
    def forward(ctx, x, perm, inv):
        ctx.save_for_backward(inv)
        return x.index_select(1, perm)

    @staticmethod
    def backward(ctx, grad):
        inv, = ctx.saved_tensors
        return grad.index_select(1, inv), None, None


def window_order(h, w, window_size, shift, device=None):
    """(perm, inv): ``tokens[:, perm]`` is the cyclic shift by ``-shift`` followed by the window
    partition of an (h, w) raster of tokens (windows in raster order, tokens in raster order inside
    a window), in one gather; ``[:, inv]`` undoes both."""
    grid = torch.arange(h * w, device=device).view(1, h, w, 1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    perm = window_partition(grid, window_size).reshape(-1)
    return perm, torch.argsort(perm)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

class GroupedLinear(nn.Module):
    """Block-diagonal linear: group ``g`` maps its ``in/groups`` input channels to its
    ``out/groups`` output channels.  Weight layout ``(out, in // groups)`` as grouped convs; with
    one group it is ``nn.Linear``'s layout (and its default init)."""

    def __init__(self, in_features, out_features, groups=1, bias=True):
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(f'GroupedLinear: in_features={in_features} and out_features={out_features} '
                             f'must both be divisible by groups={groups}.')
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.weight = nn.Parameter(torch.empty(out_features, in_features // groups))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def dense_weight(self):
        """The equivalent ``(out, in)`` weight (zeros off the diagonal blocks)."""
        if self.groups == 1:
            return self.weight
        return torch.block_diag(*self.weight.view(self.groups, -1, self.weight.shape[1]).unbind(0))

    def forward(self, x):
        return F.linear(x, self.dense_weight(), self.bias)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, groups={self.groups}'


class GroupShiftedWindowAttention(nn.Module):
    """GSWA (see module docstring): grouped Q/K/V projections with reduced Q/K width, window
    attention with learnable relative-position bias (+ shift mask) and a full output projection.

    Holds the parameters; ``forward(qkv_windows, mask)`` takes the already projected and windowed
    ``(B, nW, N, 2 * qk_dim + dim)`` tensor (projection lives in the layer so it can be fused
    with the LayerNorm) and returns the projected ``(B, nW, N, dim)`` output.
    """

    def __init__(self, dim, window_size, num_heads, qk_dim, num_groups=1, qkv_bias=True, attn_backend='auto',
                 recompute=True, attn_fallback=False):
        super().__init__()
        if num_heads % num_groups:
            raise ValueError(f'GSWA: num_heads={num_heads} must be divisible by num_groups={num_groups}.')
        if dim % num_heads or qk_dim % num_heads:
            raise ValueError(f'GSWA: embed_dim={dim} and qk_dim={qk_dim} must both be divisible by '
                             f'num_heads={num_heads}.')
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.qk_dim, self.num_groups = qk_dim, num_groups
        self.attn_backend, self.recompute, self.attn_fallback = attn_backend, recompute, attn_fallback
        self.scale = (qk_dim // num_heads) ** -0.5
        # per group the projection outputs [q_g | k_g | v_g]; with one group that is Swin's [q | k | v]
        self.qkv = GroupedLinear(dim, 2 * qk_dim + dim, num_groups, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)
        self.register_buffer('relative_position_index', relative_position_index(window_size), persistent=False)

    def _backend(self, x):
        """``attn_backend``, except ``'auto'`` on CPU with ``recompute``: then ``'naive'``.  With
        recompute nothing the attention computes is kept for backward (the forward runs without
        autograd, and backward re-runs it for one layer at a time), so what a fused or chunked
        kernel saves in stored memory no longer matters; on CPU, for 64-token windows, the
        materialised softmax is the fastest way to values and gradients (the bias's included)."""
        if self.attn_backend == 'auto' and self.recompute and x.device.type == 'cpu':
            return 'naive'
        return self.attn_backend

    def _attend(self, qkv, table, mask):
        """(B, nW, N, 2*qk+dim) windows -> merged heads (B, nW, N, dim), before the projection."""
        b, nw, n, _ = qkv.shape
        g, heads = self.num_groups, self.num_heads
        dq, dv = self.qk_dim // heads, self.dim // heads
        qkv = qkv.view(b, nw, n, g, -1)
        hg = heads // g
        q, k, v = qkv.split([hg * dq, hg * dq, hg * dv], dim=-1)

        bias = table[self.relative_position_index.view(-1)].view(n, n, heads).permute(2, 0, 1)  # heads, N, N
        if mask is None:  # one bias for every window: windows go to the batch axis
            def heads_first(t, d):
                return t.reshape(b, nw, n, heads, d).permute(0, 1, 3, 2, 4).reshape(b * nw, heads, n, d)
            bias = bias.unsqueeze(0)
        else:  # a bias per window: windows go to the head axis so the bias broadcasts over the batch
            def heads_first(t, d):
                return t.reshape(b, nw, n, heads, d).permute(0, 1, 3, 2, 4).reshape(b, nw * heads, n, d)
            bias = (mask.unsqueeze(1) + bias.unsqueeze(0)).reshape(1, nw * heads, n, n)
        out = attention(heads_first(q, dq), heads_first(k, dq), heads_first(v, dv), bias=bias,
                        backend=self._backend(qkv), scale=self.scale, fallback=self.attn_fallback)
        return out.view(b, nw, heads, n, dv).transpose(2, 3).reshape(b, nw, n, self.dim)

    def _hand_written(self, qkv):
        """Whether ``_WindowAttentionProj`` runs this call: on CPU (where it was measured and
        tested), recompute on, the ``naive`` backend, autograd recording a gradient, no autocast
        (its forward and backward run in the input's dtype) and not traced (Dynamo takes the
        checkpoint path of ``prefix_linear``)."""
        params = (qkv, self.relative_position_bias_table, self.proj.weight, self.proj.bias)
        return (qkv.device.type == 'cpu' and self.recompute and torch.is_grad_enabled()
                and any(t.requires_grad for t in params) and self._backend(qkv) == 'naive'
                and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling())

    def forward(self, qkv_windows, mask=None):
        if self._hand_written(qkv_windows):
            dims = (self.num_heads, self.num_groups, self.qk_dim // self.num_heads, self.dim // self.num_heads)
            return _WindowAttentionProj.apply(qkv_windows, self.relative_position_bias_table, mask, self.proj.weight,
                                              self.proj.bias, self.relative_position_index.view(-1), dims, self.scale)
        inputs = (qkv_windows, self.relative_position_bias_table, mask)
        return prefix_linear(self._attend, inputs, self.proj.weight, self.proj.bias, self.recompute)

    def extra_repr(self):
        return (f'dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}, '
                f'qk_dim={self.qk_dim}, num_groups={self.num_groups}, backend={self.attn_backend!r}')


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (SwinIR's MLP); the LayerNorm before it is fused in by the layer."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)


def _drop_path_scale(x, drop_prob, training):
    """Per-sample stochastic-depth factor (0 or 1/keep) of shape (B, 1, 1, 1), or None."""
    if drop_prob == 0. or not training:
        return None
    keep = 1 - drop_prob
    return torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)


class GSWATransformerLayer(nn.Module):
    """x + GSWA(LN(x)) ; x + MLP(LN(x)), on a (B, H, W, C) token grid padded to the window."""

    def __init__(self, dim, num_heads, window_size, shift_size, qk_dim, num_groups, mlp_ratio=2., qkv_bias=True,
                 drop_path=0., attn_backend='auto', recompute=True, attn_fallback=False):
        super().__init__()
        self.dim, self.window_size, self.shift_size = dim, window_size, shift_size
        self.drop_path, self.recompute = drop_path, recompute
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GroupShiftedWindowAttention(dim, window_size, num_heads, qk_dim, num_groups, qkv_bias,
                                                attn_backend, recompute, attn_fallback)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, geometry):
        """``x``: (B, H, W, C) tokens, H and W multiples of the window; ``geometry``: the cached
        ``{'mask': shift mask, shift: (perm, inv)}`` of this size (see ``AgileIR.geometry``)."""
        b, h, w, c = x.shape
        ws, s = self.window_size, self.shift_size
        perm, inv = geometry[s]
        # roll + window partition in one gather, then LayerNorm -> Q/K/V on the windowed tokens
        windows = _PermuteTokens.apply(x.reshape(b, h * w, c), perm, inv)
        qkv = prefix_linear(_layer_norm, (windows, self.norm1.weight, self.norm1.bias), self.attn.qkv.dense_weight(),
                            self.attn.qkv.bias, self.recompute)
        y = self.attn(qkv.view(b, -1, ws * ws, qkv.shape[-1]), geometry['mask'] if s else None)
        y = _PermuteTokens.apply(y.view(b, h * w, c), inv, perm).view(b, h, w, c)  # back to the raster
        scale = _drop_path_scale(x, self.drop_path, self.training)
        x = x + (y if scale is None else y * scale)

        mlp = self.mlp
        y = prefix_linear(_norm_fc1_gelu, (x, self.norm2.weight, self.norm2.bias, mlp.fc1.weight, mlp.fc1.bias),
                          mlp.fc2.weight, mlp.fc2.bias, self.recompute)
        scale = _drop_path_scale(x, self.drop_path, self.training)
        return x + (y if scale is None else y * scale)

    def extra_repr(self):
        return f'shift_size={self.shift_size}, drop_path={self.drop_path}'


class BasicLayer(nn.Module):
    """A stack of GSWA layers alternating regular and shifted windows (SwinIR's BasicLayer)."""

    def __init__(self, depth, drop_path, **layer_kwargs):
        super().__init__()
        ws = layer_kwargs['window_size']
        self.blocks = nn.ModuleList([
            GSWATransformerLayer(shift_size=0 if i % 2 == 0 else ws // 2, drop_path=drop_path[i], **layer_kwargs)
            for i in range(depth)])

    def forward(self, x, geometry):
        for blk in self.blocks:
            x = blk(x, geometry)
        return x


def _conv_block(dim, resi_connection):
    if resi_connection == '1conv':
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == '3conv':
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}.")


class RGSWAB(nn.Module):
    """Residual group (SwinIR's RSTB): GSWA layers -> conv -> + input."""

    def __init__(self, depth, drop_path, resi_connection, **layer_kwargs):
        super().__init__()
        self.residual_group = BasicLayer(depth, drop_path, **layer_kwargs)
        self.conv = _conv_block(layer_kwargs['dim'], resi_connection)

    def forward(self, x, geometry):
        y = self.residual_group(x, geometry)
        return self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + x


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------

class AgileIR(nn.Module):
    """AgileIR super-resolution network (x2/x3/x4), a drop-in for BasicSR's ``SwinIR`` arguments.

    Args:
        upscale, in_chans, img_size, window_size, img_range, depths, embed_dim, num_heads,
        mlp_ratio, upsampler, resi_connection, qkv_bias, drop_path_rate, patch_norm: as SwinIR
            (``img_size`` is accepted for compatibility; any input size works).
        qk_dim (int | None): total Q (and K) width over all heads; default half of ``embed_dim``
            (rounded down to a multiple of the heads, at least one channel per head): 30 for 60.
        num_groups (int): head groups of GSWA (each with its own channel slice); default 2.
        attn_backend (str): backend of ``agile_ir_plugin.ops.attention.attention``.
        attn_fallback (bool): let a fused attention kernel that fails at run time fall back to the
            exact ``chunked`` backend (default: that failure is an error naming the inputs).
        recompute (bool): re-run LayerNorms, GELU, attention in backward instead of storing them
            (see module docstring); False gives plain autograd (same values and gradients).
        ape, use_checkpoint, qk_scale, drop_rate, attn_drop_rate, norm_layer, patch_size: SwinIR
            arguments accepted for drop-in compatibility; unsupported non-default values raise.
    """

    def __init__(self, upscale=2, in_chans=3, img_size=64, window_size=8, img_range=1., depths=(6, 6, 6, 6),
                 embed_dim=60, num_heads=(6, 6, 6, 6), mlp_ratio=2., upsampler='pixelshuffledirect',
                 resi_connection='1conv', qk_dim=None, num_groups=2, attn_backend='auto', recompute=True,
                 attn_fallback=False,
                 qkv_bias=True, drop_path_rate=0.1, patch_norm=True, ape=False, use_checkpoint=False,
                 qk_scale=None, drop_rate=0., attn_drop_rate=0., patch_size=1, **kwargs):
        super().__init__()
        if kwargs.pop('norm_layer', nn.LayerNorm) is not nn.LayerNorm or kwargs:
            raise TypeError(f'AgileIR: unexpected arguments {sorted(kwargs) or ["norm_layer"]}.')
        unsupported = {'ape': (ape, False), 'qk_scale': (qk_scale, None), 'drop_rate': (drop_rate, 0.),
                       'attn_drop_rate': (attn_drop_rate, 0.), 'patch_size': (patch_size, 1)}
        for name, (value, default) in unsupported.items():
            if value != default:
                raise ValueError(f'AgileIR does not support {name}={value!r} (SwinIR-light uses {default!r}); '
                                 f'remove it from the options.')
        if upsampler != 'pixelshuffledirect':
            raise ValueError(f"AgileIR supports upsampler='pixelshuffledirect' (SwinIR-light), got {upsampler!r}.")
        def layer_qk_dim(heads):  # default: half the per-head width for Q and K (at least 1 per head)
            return heads * max(1, embed_dim // heads // 2) if qk_dim is None else qk_dim

        self.upscale, self.img_range, self.window_size = upscale, img_range, window_size
        self.embed_dim, self.qk_dim, self.num_groups = embed_dim, layer_qk_dim(num_heads[0]), num_groups
        self.use_checkpoint = use_checkpoint  # accepted for SwinIR compatibility; recompute covers it
        mean = (0.4488, 0.4371, 0.4040) if in_chans == 3 else (0.,) * in_chans
        self.register_buffer('mean', torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_norm = nn.LayerNorm(embed_dim) if patch_norm else nn.Identity()
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.layers.append(RGSWAB(
                depth, dpr[sum(depths[:i]):sum(depths[:i + 1])], resi_connection, dim=embed_dim,
                num_heads=num_heads[i], window_size=window_size, qk_dim=layer_qk_dim(num_heads[i]),
                num_groups=num_groups, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, attn_backend=attn_backend,
                recompute=recompute, attn_fallback=attn_fallback))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _conv_block(embed_dim, resi_connection)
        self.upsample = nn.Sequential(nn.Conv2d(embed_dim, upscale ** 2 * in_chans, 3, 1, 1), nn.PixelShuffle(upscale))
        self.apply(self._init_weights)
        self._geometry_cache = {}

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, GroupedLinear)):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def no_weight_decay_keywords(self):
        return {'relative_position_bias_table'}

    def geometry(self, h, w, device, dtype):
        """Per padded size, built once and cached: the Swin shift mask (nW, N, N) and, for the
        regular and the shifted layers, the token permutation into windows and its inverse."""
        if torch.compiler.is_compiling() or not (isinstance(h, int) and isinstance(w, int)):
            # traced (torch.compile / export): built inside the graph; a cache lookup would make the
            # graph depend on the dict's contents (a recompile on the second call)
            return self._build_geometry(h, w, device, dtype)
        key = (h, w, str(device), dtype)
        if key not in self._geometry_cache:
            if len(self._geometry_cache) >= 16:
                self._geometry_cache.clear()
            with torch.inference_mode(False):  # a cache filled under inference_mode must serve training too
                self._geometry_cache[key] = self._build_geometry(h, w, device, dtype)
        return self._geometry_cache[key]

    def _build_geometry(self, h, w, device, dtype):
        ws, shift = self.window_size, self.window_size // 2
        return {0: window_order(h, w, ws, 0, device), shift: window_order(h, w, ws, shift, device),
                'mask': shifted_window_mask(h, w, ws, shift, device=device).to(dtype)}

    def shift_mask(self, h, w, device, dtype):
        """The cached shift mask of a padded (h, w) input."""
        return self.geometry(h, w, device, dtype)['mask']

    def _pad(self, x):
        return pad_to_multiple(x, self.window_size)

    def forward_features(self, x):
        """(B, C, H, W) feature map, H and W multiples of the window -> same shape."""
        b, c, h, w = x.shape
        geometry = self.geometry(h, w, x.device, x.dtype)
        t = self.patch_norm(x.permute(0, 2, 3, 1))  # (B, H, W, C) tokens, channels last
        for layer in self.layers:
            t = layer(t, geometry)
        return self.norm(t).permute(0, 3, 1, 2)

    def forward(self, x):
        h, w = x.shape[-2:]
        x = (self._pad(x) - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.upsample(x) / self.img_range + self.mean
        return x[..., :h * self.upscale, :w * self.upscale]
