"""GLMHA: instance-Guided Low-rank Multi-Head self-Attention (our reading of the paper).

Paper: Z. Ilyas, N. Akhtar, D. Suter, S. Z. Gilani, "GLMHA: A Guided Low-rank Multi-Head
Self-Attention for Efficient Image Restoration and Spectral Reconstruction", arXiv 2410.00380.
No official code is public and only the abstract and figure captions are known: channel-wise
self-attention (CSA: Restormer's MDTA, MST++'s S-MSA) is shown to be low-rank, and GLMHA
"generates low-rank Keys and Values embeddings from the input feature map in an instance-based
learnable way" through a calibration network, saving FLOPs for short sequences too (in CSA the
sequence is the channels) and saving parameters.  Everything below is *our* design from that.

Channel-wise self-attention, per head (C channels, h heads, c = C/h channels per head, N = HW)::

    Q, K, V = split(W_qkv x)                      # each (c, N): c channel tokens of length N
    A = softmax(T * norm(Q) norm(K)^T)            # (c, c), T a learnable per-head temperature
    y = W_o concat_heads(A V)                     # (C, N)

GLMHA keeps the c full-rank queries (the output needs C channels) but attends to only r <= c
key/value tokens per head (rank r, R = h r in total)::

    g_k, g_v = calibration(x)                     # (C,) each: instance-based input-channel gates
    Q   = W_q x,  K_r = W_k diag(g_k) x,  V_r = W_v diag(g_v) x      # W_k, W_v: (R, C)
    A   = softmax(T * norm(Q) norm(K_r)^T)        # (c, r) per head
    y   = (W_o blockdiag_heads(A)) V_r            # (C, R) @ (R, N), see "execution" below

*Low-rank K/V generation.*  K_r and V_r are produced directly from the input feature map by an
(R x C) projection, so their cost falls with the rank — unlike Linformer-style projections of a
full K along the sequence, which add work on top of full-size K/V and only pay off for long
sequences.  Here the sequence is short (c = 31..96 channels) and the savings are in the
projections themselves (parameters and MACs), in the (c x r) attention map and in A V.

*Calibration network (the instance guidance).*  A static (R x C) projection fixes one
r-dimensional subspace for every image, while CSA's low-rank structure differs per image.  The
calibration network turns the projection into an instance-specific one: from the global
descriptor z = mean_HW(x) it predicts two input-channel gates
``g = 2 sigmoid(W_2 GELU(W_1 z + b_1) + b_2)`` in (0, 2)^C (hidden width C / calib_reduction, at
least ``calib_min_hidden``), and the effective projections are ``W_k diag(g_k)`` and
``W_v diag(g_v)``: which input channels feed the r key/value tokens is chosen per image (the row
space of the projection moves with the instance; the L2 normalisation of keys would cancel any
*output*-side gate, so the gates act on the inputs).  W_2, b_2 start at zero, so the calibration
starts as the identity (g = 1).  The gates are folded into the projection weights (B small
(R x C) matrices) instead of scaling the (C x N) input, so no extra activation is stored.

*Execution.*  Two exact reorderings (pure associativity, no approximation):
(1) the L2 norms over N are taken as vectors and divided out of the small (c x r) logits
instead of materialising normalised copies of Q and K; (2) because y is linear in V_r, the output
projection is folded into the attention map, ``M = W_o blockdiag(A)`` (C x R, costing C^2 r MACs,
independent of N), and applied once to V_r: C R N MACs instead of C r N (A V) + C^2 N (W_o).
Both would speed up plain CSA as well; the benchmark reports GLMHA at full rank to separate
their share from the low-rank savings.  This is why the attention is computed inline here rather
than through ``agile_ir_plugin.ops.attention`` (which returns softmax(.) V, not the map A that
the fold needs).

*Cost* per image (MACs, as counted by ``torch.utils.flop_counter``), with d = 1 when the 3x3
depthwise convolution on q/k/v is used (Restormer flavour) else 0, p = 1 with the MST++
positional branch, and k = calibration hidden width::

    MACs   = N [C (C + 2R) + 9 d (C + 2R) + C r + C R + 18 p C]  +  C^2 r + 3 C k
    params = C (C + 2R) + 9 d (C + 2R) + C^2 + h + 18 p C + 3 C k + k + 2 C  (+ biases)

against plain CSA (MDTA / S-MSA): ``N [4 C^2 + 2 C c + 27 d C + 18 p C]`` MACs and
``4 C^2 + 27 d C + h + 18 p C`` parameters.  Both fall linearly with the rank; with identity
calibration and r = c, GLMHA computes exactly CSA (tested), loading the CSA's qkv/out weights.
``GLMHA.macs(H, W)`` and ``GLMHA.num_params_formula()`` return the formulas for one instance.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['GLMHA', 'CalibrationNetwork', 'resolve_rank']


def resolve_rank(head_dim, rank=None, reduction=2.0):
    """Key/value tokens per head: ``rank`` if given, else ``round(head_dim / reduction)`` (>= 1)."""
    if rank is None:
        if reduction is None or reduction < 1:
            raise ValueError(f'GLMHA reduction must be >= 1 (1 = full rank), got {reduction!r}.')
        rank = max(1, int(round(head_dim / reduction)))
    if not 1 <= rank <= head_dim:
        raise ValueError(f'GLMHA rank must be in [1, channels per head = {head_dim}], got {rank}.')
    return int(rank)


class CalibrationNetwork(nn.Module):
    """Instance guidance: global average descriptor -> MLP -> ``n_gates`` gates in (0, 2)^dim.

    The last layer is zero-initialised, so every gate starts at exactly 1 (identity)."""

    def __init__(self, dim, hidden, n_gates=2):
        super().__init__()
        self.dim, self.n_gates = dim, n_gates
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, n_gates * dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x):
        z = x.mean(dim=(2, 3))
        gates = 2 * torch.sigmoid(self.fc2(F.gelu(self.fc1(z))))
        return gates.view(x.shape[0], self.n_gates, self.dim)


class GLMHA(nn.Module):
    """Guided low-rank channel attention on (B, C, H, W) maps (see the module docstring).

    Args:
        dim: channels C.  num_heads: heads h (C must be divisible by h).
        rank: key/value tokens per head r (1..C/h); if None, ``round(C / h / reduction)``.
        reduction: C/h divided by r when ``rank`` is None (1 = full rank, default 2).
        bias: bias of the q/k/v projection (and of its depthwise conv).
        proj_bias: bias of the output projection (default: ``bias``).
        dwconv: 3x3 depthwise conv on q, k, v after the projection (Restormer's MDTA has it).
        pos_emb: MST++'s positional branch (dw3x3 -> GELU -> dw3x3, no bias) added to the output;
            S-MSA applies it to its full-rank v, which GLMHA does not have, so it acts on x here.
        calibration: use the calibration network (False = static low-rank projections).
        calib_reduction, calib_min_hidden: its hidden width, ``max(C // calib_reduction, min)``.
        fold_output: apply ``W_o blockdiag(A)`` to V_r in one product (exact; see docstring).
    """

    def __init__(self, dim, num_heads, rank=None, reduction=2.0, bias=False, proj_bias=None,
                 dwconv=True, pos_emb=False, calibration=True, calib_reduction=16, calib_min_hidden=8,
                 fold_output=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'GLMHA: dim ({dim}) must be divisible by num_heads ({num_heads}).')
        self.dim, self.num_heads = dim, num_heads
        self.head_dim = dim // num_heads
        self.rank = resolve_rank(self.head_dim, rank, reduction)
        self.fold_output = fold_output
        R = self.low_rank_dim
        proj_bias = bias if proj_bias is None else proj_bias

        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        # rows: C query channels, then R key channels, then R value channels
        self.qkv = nn.Conv2d(dim, dim + 2 * R, kernel_size=1, bias=bias)
        self.qkv_dwconv = (nn.Conv2d(dim + 2 * R, dim + 2 * R, kernel_size=3, padding=1, groups=dim + 2 * R,
                                     bias=bias) if dwconv else None)
        self.calibration = (CalibrationNetwork(dim, max(dim // calib_reduction, calib_min_hidden))
                            if calibration else None)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=proj_bias)
        self.pos_emb = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim), nn.GELU(),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim)) if pos_emb else None

    @property
    def low_rank_dim(self):
        return self.num_heads * self.rank

    def extra_repr(self):
        return f'dim={self.dim}, heads={self.num_heads}, rank={self.rank}/{self.head_dim}'

    # -- cost model (see the module docstring) -------------------------------------------------
    def macs(self, height, width):
        """Multiply-accumulates of one forward for one (C, height, width) image."""
        C, R, r, N = self.dim, self.low_rank_dim, self.rank, height * width
        d, p = self.qkv_dwconv is not None, self.pos_emb is not None
        per_pixel = C * (C + 2 * R) + 9 * d * (C + 2 * R) + C * r + 18 * p * C
        per_pixel += C * R if self.fold_output else C * r + C * C
        fixed = C * C * r if self.fold_output else 0
        if self.calibration is not None:
            k = self.calibration.fc1.out_features
            fixed += 3 * C * k  # (+ 2RC elementwise products folding the gates: not MACs)
        return N * per_pixel + fixed

    def num_params_formula(self):
        C, R, h = self.dim, self.low_rank_dim, self.num_heads
        n = C * (C + 2 * R) + C * C + h
        n += (C + 2 * R) * (self.qkv.bias is not None) + C * (self.project_out.bias is not None)
        if self.qkv_dwconv is not None:
            n += 9 * (C + 2 * R) + (C + 2 * R) * (self.qkv_dwconv.bias is not None)
        if self.pos_emb is not None:
            n += 18 * C
        if self.calibration is not None:
            k = self.calibration.fc1.out_features
            n += 3 * C * k + k + 2 * C
        return n

    # -- forward ---------------------------------------------------------------------------------
    def _project(self, x):
        """q/k/v = [W_q; W_k diag(g_k); W_v diag(g_v)] x, the gates folded into per-image weights."""
        B, C, H, W = x.shape
        if self.calibration is None:
            return self.qkv(x)
        R = self.low_rank_dim
        gates = self.calibration(x)                                    # (B, 2, C)
        weight = self.qkv.weight.view(C + 2 * R, C)
        w_q = weight[:C].expand(B, C, C)
        w_kv = weight[C:].view(2, R, C).unsqueeze(0) * gates.unsqueeze(2)   # (B, 2, R, C)
        weights = torch.cat([w_q, w_kv.reshape(B, 2 * R, C)], dim=1)
        if self.qkv.bias is not None:
            out = torch.baddbmm(self.qkv.bias.view(1, -1, 1), weights, x.reshape(B, C, H * W))
        else:
            out = torch.bmm(weights, x.reshape(B, C, H * W))
        return out.view(B, C + 2 * R, H, W)

    def forward(self, x):
        B, C, H, W = x.shape
        if C != self.dim:
            raise ValueError(f'GLMHA expects {self.dim} channels, got input of shape {tuple(x.shape)}.')
        h, c, r, R, N = self.num_heads, self.head_dim, self.rank, self.low_rank_dim, H * W
        qkv = self._project(x)
        if self.qkv_dwconv is not None:
            qkv = self.qkv_dwconv(qkv)
        qkv = qkv.reshape(B, C + 2 * R, N)
        q = qkv[:, :C].reshape(B, h, c, N)
        k = qkv[:, C:C + R].reshape(B, h, r, N)
        v = qkv[:, C + R:]                                               # (B, R, N)
        # Attention inline (not ops.attention): the fold below needs the (c x r) map A itself, and
        # dividing the logits by the norms avoids normalised (C x N) / (R x N) copies.
        q_norm = torch.linalg.vector_norm(q, dim=-1).clamp_min(1e-12)    # F.normalize semantics
        k_norm = torch.linalg.vector_norm(k, dim=-1).clamp_min(1e-12)
        logits = (q @ k.transpose(-2, -1)) / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))
        attn = (logits * self.temperature).softmax(dim=-1)               # (B, h, c, r)
        w_o = self.project_out.weight.view(C, h, c)
        if self.fold_output:
            mix = torch.einsum('ohi,bhij->bohj', w_o, attn).reshape(B, C, R)
            out = torch.bmm(mix, v)
            if self.project_out.bias is not None:
                out = out + self.project_out.bias.view(1, C, 1)
            out = out.view(B, C, H, W)
        else:
            out = (attn @ v.reshape(B, h, r, N)).reshape(B, C, H, W)
            out = self.project_out(out)
        if self.pos_emb is not None:
            out = out + self.pos_emb(x)
        return out
