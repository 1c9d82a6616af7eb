"""Exact flash-style attention in plain PyTorch (the ``chunked`` backend of ``ops.attention``).

Any device, dtype, head dims and additive bias (learnable or not).  The forward keeps only ``out``
and the row log-sum-exp (on CPU it runs PyTorch's fused CPU flash kernel when ``Dqk == Dv``); the
backward recomputes the probabilities a few windows at a time (at most ``CHUNK_ELEMENTS`` scores
at once) and returns gradients for q, k, v and the bias.

A relative-position bias can be passed as a ``HankelBias`` (``ops/window.py``: a strided view of a
small table): the CPU forward copies it a block of query rows at a time into one buffer for the
fused kernel (elsewhere it is copied out whole and dropped), and the backward copies each chunk's
rows straight into its score buffer, so neither the (heads, N, N) bias nor its gradient is kept
between forward and backward; the table's gradient is returned directly.
"""
import math

import torch

from .window import (HankelBias, hankel_grad_by_x_, hankel_grad_by_x_shape, hankel_grad_from_by_x,
                     hankel_view)

#: Largest number of attention scores the ``chunked`` backend materialises at once (per chunk):
#: 2**19 fp32 scores = 2 MiB, small enough to stay in cache (measured fastest on CPU).
CHUNK_ELEMENTS = 2 ** 19
CUDA_CHUNK_ELEMENTS = 2 ** 25  # GPUs: fewer, larger kernels

_CPU_FLASH = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)
_LOG2E = math.log2(math.e)


def _block_rows(h, nq, nk, limit, row_multiple=1):
    """Query rows per chunk of <= ``limit`` scores: all of them while they fit, else a multiple of
    ``row_multiple`` (at least one multiple)."""
    return nq if h * nq * nk <= limit else max(row_multiple, limit // (h * nk) // row_multiple * row_multiple)


def _blocks(b, h, nq, nk, device, row_multiple=1):
    """Chunks of the (batch, query rows) space holding <= CHUNK_ELEMENTS scores (CUDA: more):
    whole windows while they fit (measured fastest on CPU), else blocks of query rows (a multiple
    of ``row_multiple`` rows)."""
    limit = CHUNK_ELEMENTS if device.type == 'cpu' else CUDA_CHUNK_ELEMENTS
    rows = _block_rows(h, nq, nk, limit, row_multiple)
    batch = max(1, limit // (h * rows * nk))
    for b0 in range(0, b, batch):
        for r0 in range(0, nq, rows):
            yield slice(b0, min(b, b0 + batch)), slice(r0, min(nq, r0 + rows))


def _bias_block_index(bias4, bs, rs):
    """Index of a chunk's rows in the 4-D bias; broadcast dims of size 1 are kept whole."""
    return (bs if bias4.shape[0] > 1 else slice(None), slice(None), rs if bias4.shape[2] > 1 else slice(None))


def _bias_block(bias4, bs, rs):
    return bias4[_bias_block_index(bias4, bs, rs)]


def hankel_flash_forward(q, k, v, table, ws, scale):
    """The CPU flash kernel over blocks of query rows, each block's bias rows copied from the table
    into one reused buffer (no (heads, N, N) bias: a fresh buffer that size costs more in page
    faults than the copy).  Returns (out, lse), or (None, None) if the kernel refuses."""
    b, h, nq, _ = q.shape
    nk = k.shape[2]
    rows = _block_rows(h, nq, nk, CHUNK_ELEMENTS, ws)
    mask = q.new_empty(h * rows * nk)
    outs, lses = [], []
    try:
        for r0 in range(0, nq, rows):
            r1 = min(nq, r0 + rows)
            block = hankel_view(table, ws, r0 // ws, r1 // ws)
            m = mask[:block.numel()].view(block.shape)
            m.copy_(block)
            o, l = _CPU_FLASH(q[:, :, r0:r1], k, v, 0.0, False, attn_mask=m.view(1, h, r1 - r0, nk), scale=scale)
            outs.append(o)
            lses.append(l)
    except RuntimeError:
        return None, None
    if len(outs) == 1:
        return outs[0], lses[0]
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


class _ChunkedAttention(torch.autograd.Function):
    """Exact attention keeping (q, k, v, bias, out, lse) for backward instead of the N x N matrices."""

    @staticmethod
    def forward(ctx, q, k, v, bias4, scale, table=None, window_size=None):
        b, h, nq, _ = q.shape
        nk = k.shape[2]
        acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in >= fp32
        out = lse = None
        cpu_flash = _CPU_FLASH is not None and q.device.type == 'cpu' and v.shape[-1] == q.shape[-1]
        if cpu_flash and table is not None:  # a block of query rows at a time, no dense bias
            out, lse = hankel_flash_forward(q, k, v, table, window_size, scale)
        if out is None and table is not None:  # copied out whole for this forward, not kept
            bias4 = HankelBias(table, window_size).materialize()
        if cpu_flash and out is None:
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
        ctx.scale, ctx.window_size = scale, window_size
        ctx.save_for_backward(q, k, v, bias4 if table is None else table, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias4, out, lse = ctx.saved_tensors
        b, h, nq, _ = q.shape
        nk = k.shape[2]
        acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in >= fp32
        ws = ctx.window_size
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        need_bias = ctx.needs_input_grad[3 if ws is None else 5]
        if ws is not None:  # a HankelBias: each chunk's rows are copied from the table
            table_dtype, table, bias4 = bias4.dtype, bias4.to(acc).contiguous(), None
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
        dbias = by_x = None
        blocks = list(_blocks(b, h, nq, nk, q.device, 1 if ws is None else ws))
        if need_bias and ws is None:
            dbias = torch.empty(bias4.shape, dtype=acc, device=q.device)
        elif need_bias:  # the table's gradient, streamed: a chunk's rows summed over windows, then
            # over their anti-diagonals (by x here, by y at the end): no (heads, N, N) gradient
            blocks.sort(key=lambda block: (block[1].start, block[0].start))  # windows inner
            by_x = q.new_zeros(hankel_grad_by_x_shape(h, ws), dtype=acc)
            rows_max = max(rs.stop - rs.start for _, rs in blocks)
            row_grad = q.new_empty(h * rows_max * nk, dtype=acc)
        size = max((bs.stop - bs.start) * (rs.stop - rs.start) for bs, rs in blocks) * h * nk
        p_buf, ds_buf = q.new_empty(size, dtype=acc), q.new_empty(size, dtype=acc)  # reused by every chunk
        for bs, rs in blocks:
            shape = (bs.stop - bs.start, h, rs.stop - rs.start, nk)
            n = shape[0] * shape[1] * shape[2] * shape[3]
            p = p_buf[:n].view(shape)
            bias_block = None if bias4 is None else _bias_block(bias4, bs, rs).expand(shape)
            if ws is not None:  # the chunk's bias rows copied from the table, the GEMM added onto them
                rows = hankel_view(table, ws, rs.start // ws, rs.stop // ws)
                if shape[0] == 1:
                    p[0].view(rows.shape).copy_(rows)
                    p[0].baddbmm_(q_aug[bs, :, rs][0], k_aug_t[bs][0], beta=_LOG2E)
                else:  # several windows per chunk share the rows
                    torch.matmul(q_aug[bs, :, rs], k_aug_t[bs], out=p)
                    p.view((shape[0],) + rows.shape).add_(rows, alpha=_LOG2E)
            elif bias_block is not None and shape[0] == 1 and bias4.dtype == acc:  # bias added in the GEMM (a pass less)
                torch.baddbmm(bias_block[0], q_aug[bs, :, rs][0], k_aug_t[bs][0], beta=_LOG2E, out=p[0])
            else:
                torch.matmul(q_aug[bs, :, rs], k_aug_t[bs], out=p)
                if bias_block is not None:
                    p.add_(bias_block, alpha=_LOG2E)
            torch.exp2(p, out=p)
            if need_v:  # accumulated in place by the GEMM (no temporary)
                if shape[0] == 1:
                    dv_t[bs][0].baddbmm_(grad_out[bs, :, rs][0].transpose(-2, -1), p[0])
                else:
                    dv_t[bs] += grad_out[bs, :, rs].transpose(-2, -1) @ p
            ds = torch.matmul(g_aug[bs, :, rs], v_aug_t[bs], out=ds_buf[:n].view(shape))
            ds.mul_(p)  # dL/d(scores incl. bias)
            if need_bias and ws is not None:
                part = ds.sum(0) if shape[0] > 1 else ds[0]
                rg = row_grad[:part.numel()].view(part.shape)
                if bs.start == 0:
                    rg.copy_(part)
                else:
                    rg.add_(part)
                if bs.stop == b:  # every window of these rows seen
                    hankel_grad_by_x_(by_x, rg, ws, rs.start // ws)
            elif need_bias:
                reduce_dims = [i for i in range(4) if dbias.shape[i] == 1 and ds.shape[i] != 1]
                part = ds.sum(reduce_dims, keepdim=True) if reduce_dims else ds
                first = (dbias.shape[0] > 1 or bs.start == 0) and (dbias.shape[2] > 1 or rs.start == 0)
                if first:  # every block of dbias is written once before it is accumulated into
                    dbias[_bias_block_index(dbias, bs, rs)] = part
                else:
                    dbias[_bias_block_index(dbias, bs, rs)] += part
            if need_q:
                dq[bs, :, rs] = ds @ k_acc[bs]
            if need_k:
                if shape[0] == 1:
                    dk_t[bs][0].baddbmm_(q_s[bs, :, rs][0].transpose(-2, -1), ds[0])
                else:
                    dk_t[bs] += q_s[bs, :, rs].transpose(-2, -1) @ ds
        if need_q:
            dq *= ctx.scale
        dk = None if dk_t is None else dk_t.transpose(-2, -1)
        dv = None if dv_t is None else dv_t.transpose(-2, -1)
        grads = (None if dq is None else dq.to(q.dtype), None if dk is None else dk.to(k.dtype),
                 None if dv is None else dv.to(v.dtype))
        if ws is None:
            return grads + (None if dbias is None else dbias.to(bias4.dtype), None, None, None)
        dtable = None if by_x is None else hankel_grad_from_by_x(by_x, ws).to(table_dtype)
        return grads + (None, None, dtable, None)


def chunked_attention(q, k, v, bias=None, scale=None):
    """Exact, memory-lean attention with gradients for q, k, v and bias (a tensor or a
    ``HankelBias``; see module docstring)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if isinstance(bias, HankelBias):  # cast on the small table: the same values as the dense cast
        return _ChunkedAttention.apply(q, k, v, None, scale, bias.table.to(bias.dtype), bias.window_size)
    bias4 = None
    if bias is not None:
        lead = 4 - bias.dim()
        bias4 = bias.reshape((1,) * lead + tuple(bias.shape))  # broadcast dims stay of size 1
    out = _ChunkedAttention.apply(q, k, v, bias4, scale)
    return out
