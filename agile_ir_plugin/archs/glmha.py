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
the fold needs).  Further choices change no value, only speed on CPU: 3x3 depthwise convs get
channels-last maps (about twice as fast there), i.e. with the depthwise conv q/k/v are projected
straight into a channels-last map, read by the attention through strided views (norms over a
strided N as square + sum, several times faster than ``vector_norm`` there), and with MST++'s
positional branch x is taken channels-last and the output produced so; and with the fold,
training goes through a hand-written backward (:class:`_FoldedAttention`; the forward is the same
ops) that writes the gradients of q, k and v into one buffer (in q/k/v's layout) and folds the
norms' gradients into the small logits, instead of autograd's zero-filled slice gradients and
per-element norm passes.

*Cost* per image (MACs, as counted by ``torch.utils.flop_counter``), with d = 1 when the 3x3
depthwise convolution on q/k/v is used (Restormer flavour) else 0, p = 1 with the MST++
positional branch, and k = calibration hidden width::

    MACs   = N [C (C + 2R) + 9 d (C + 2R) + C r + C R + 18 p C]  +  C^2 r + 3 C k
    params = C (C + 2R) + 9 d (C + 2R) + C^2 + h + 18 p C + 3 C k + k + 2 C  (+ biases)

against plain CSA (MDTA / S-MSA): ``N [4 C^2 + 2 C c + 27 d C + 18 p C]`` MACs and
``4 C^2 + 27 d C + h + 18 p C`` parameters.  Both fall linearly with the rank; with identity
calibration and r = c, GLMHA computes exactly CSA (tested), loading the CSA's qkv/out weights.
``GLMHA.macs(H, W)`` and ``GLMHA.num_params_formula()`` return the formulas for one instance.

*Presets* (``glmha_preset=`` on the hosts, table ``PRESETS``).  The paper's headline is "up to
7.7 GFLOPs reduction with 370K fewer parameters"; we read its FLOPs as MACs, as most restoration papers
count them (their "FLOPs" come from MAC counters such as thop / ptflops).  Measured at 256x256 with
``torch.utils.flop_counter`` (MACs = flops / 2):

* ``'default'`` — GLMHA in every block at rank c/2.  Restormer: 154.9 -> 128.3 GMACs, 26.13M ->
  24.61M params, i.e. 26.6 GMACs and 1.51M params saved, 3.5x and 4x the paper's headline.
* ``'paper'`` — the paper's budget.  Restormer: GLMHA only at levels 2 and 3 (the 24 blocks with
  96 and 192 channels, ranks 18 and 30 of 48), MDTA kept at level 1 (where the MACs are) and
  level 4 (where the parameters are): 7.79 GMACs (+1.2 %) and 380,784 params (+2.9 %) saved.
  The two levels are the ones whose MAC / parameter ratio lets one preset hit both numbers.
  MST++: its 15 S-MSAs hold only ~5.4 GMACs and ~0.32M params, below the headline, so its
  ``'paper'`` preset applies Restormer's rule instead: S-MSA kept at the finest and coarsest
  level, GLMHA at the middle level (62 channels) at rank c/2 = 16 of 31: 0.83 GMACs (15 % of the
  S-MSA MACs; Restormer's preset: 13.5 % of its MDTA MACs) and 12,600 params saved.

The constructors' default is still rank c/2 everywhere (``glmha_preset=None`` equals
``'default'``): checkpoints and options written so far keep loading.  Which one to train: the
quality proxy (``python tools/benchmark.py quality``, docs/benchmarks.md) trains Restormer,
Restormer+GLMHA 'paper' and 'default' identically with 3 seeds; its small-scale result is
quoted there and in the README.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['GLMHA', 'CalibrationNetwork', 'resolve_rank', 'PRESETS', 'resolve_preset']

# Per-host presets: which levels get GLMHA (the others keep the host's CSA) and at what
# reduction c / r.  'default': GLMHA everywhere at rank c/2.  'paper': the paper's headline budget
# (see the module docstring, "Presets").
PRESETS = {
    'Restormer': {
        'default': dict(attn='glmha', reduction=2.0),
        # levels 2 and 3 only, ranks 18 and 30 of c = 48 with the default width
        'paper': dict(attn=['mdta', 'glmha', 'glmha', 'mdta'], reduction=[2.0, 8 / 3, 1.6, 2.0]),
    },
    'MSTPlusPlus': {
        'default': dict(attn='glmha', reduction=2.0),
        # the middle level (62 channels) only, rank 16 of c = 31
        'paper': dict(attn=['smsa', 'glmha', 'smsa'], reduction=2.0),
    },
}


def resolve_preset(host, preset, attn, reduction, rank):
    """(attn, reduction) of ``host`` for ``glmha_preset=preset`` (None: unchanged).  A preset
    fixes both, so giving a reduction, a rank or an attn other than 'glmha' with it is an error."""
    if preset is None:
        return attn, reduction
    presets = PRESETS.get(host, {})
    if preset not in presets:
        raise ValueError(f'{host} glmha_preset must be one of {sorted(presets)}, got {preset!r}.')
    if attn != 'glmha' or reduction is not None or rank is not None:
        raise ValueError(f"{host} glmha_preset={preset!r} sets the attention per level and the ranks: use it with "
                         f"attn='glmha' and no glmha_reduction / glmha_rank (got attn={attn!r}, "
                         f'glmha_reduction={reduction!r}, glmha_rank={rank!r}).')
    return presets[preset]['attn'], presets[preset]['reduction']


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
        """q/k/v = [W_q; W_k diag(g_k); W_v diag(g_v)] x, the gates folded into per-image weights:
        (B, C + 2R, H, W), in channels-last memory when the depthwise conv follows (it runs about
        twice as fast on it on CPU), else channels-first."""
        B, C, H, W = x.shape
        K = C + 2 * self.low_rank_dim
        x_flat = x.reshape(B, C, H * W)                                  # a view for both layouts
        weight = self.qkv.weight.view(K, C)
        if self.calibration is None:
            weights = weight.expand(B, K, C)
        else:
            R = self.low_rank_dim
            gates = self.calibration(x)                                # (B, 2, C)
            w_kv = weight[C:].view(2, R, C).unsqueeze(0) * gates.unsqueeze(2)   # (B, 2, R, C)
            weights = torch.cat([weight[:C].expand(B, C, C), w_kv.reshape(B, 2 * R, C)], dim=1)
        bias = self.qkv.bias
        if self.qkv_dwconv is None:
            if bias is None:
                return torch.bmm(weights, x_flat).view(B, K, H, W)
            return torch.baddbmm(bias.view(1, K, 1), weights, x_flat).view(B, K, H, W)
        # (B, HW, K) = x^T W^T, seen as a channels-last (B, K, H, W)
        if bias is None:
            qkv = torch.bmm(x_flat.transpose(1, 2), weights.transpose(1, 2))
        else:
            qkv = torch.baddbmm(bias.view(1, 1, K), x_flat.transpose(1, 2), weights.transpose(1, 2))
        return qkv.view(B, H, W, K).permute(0, 3, 1, 2)

    def forward(self, x):
        B, C, H, W = x.shape
        if C != self.dim:
            raise ValueError(f'GLMHA expects {self.dim} channels, got input of shape {tuple(x.shape)}.')
        h, c, r, R, N = self.num_heads, self.head_dim, self.rank, self.low_rank_dim, H * W
        if self.pos_emb is not None:  # channels-last: its depthwise convs run ~2x faster on CPU
            x = x.contiguous(memory_format=torch.channels_last)  # (a copy when x is not; then the only one kept)
        qkv = self._project(x)
        if self.qkv_dwconv is not None:
            qkv = self.qkv_dwconv(qkv)
        qkv = qkv.reshape(B, C + 2 * R, N)    # a view, channels-first or -last memory alike
        w_o = self.project_out.weight
        if self.fold_output:
            channels_last = self.pos_emb is not None  # output channels-last like the branch (MST++)
            args = (qkv, self.temperature, w_o)
            if torch.is_grad_enabled() and (qkv.requires_grad or self.temperature.requires_grad or w_o.requires_grad):
                out = _FoldedAttention.apply(*args, (h, c, r, channels_last))
            else:
                out = _folded_attention(*args, h, c, r, channels_last)[0]
            if self.project_out.bias is not None:
                out = out + self.project_out.bias.view(1, C, 1)
            out = out.view(B, C, H, W)
        else:
            attn = _attention_map(qkv, self.temperature, h, c, r)[0]     # (B, h, c, r)
            out = (attn @ qkv[:, C + R:].reshape(B, h, r, N)).reshape(B, C, H, W)
            out = self.project_out(out)
        if self.pos_emb is not None:
            out = out + self.pos_emb(x)
        return out


_EPS = 1e-12  # F.normalize's


def _heads(qkv, h, c, r):
    """Views q (B, h, c, N), k (B, h, r, N), v (B, R, N) of ``qkv`` (B, C + 2R, N), whose memory is
    channels-first (N contiguous) or channels-last (channels contiguous)."""
    B, _, N = qkv.shape
    C, R = h * c, h * r
    return qkv[:, :C].view(B, h, c, N), qkv[:, C:C + R].view(B, h, r, N), qkv[:, C + R:]


def _clamped_norms(x):
    """max(|x|, eps) over the last dim: F.normalize's denominator.

    When that dim is strided (tokens of a channels-last map) ``vector_norm`` is several times
    slower on CPU than a square and a sum, used then in fp32/fp64 (half dtypes keep
    ``vector_norm``, which autocast runs in fp32); the clamp then acts on the sum of squares
    (sqrt(eps^2) == eps in fp32 and fp64), which keeps the gradient finite at zero."""
    if x.stride(-1) == 1 or x.dtype not in (torch.float32, torch.float64):
        return torch.linalg.vector_norm(x, dim=-1).clamp_min(_EPS)
    return x.square().sum(-1).clamp_min(_EPS ** 2).sqrt()


def l2_normalize(x):
    """``F.normalize(x, dim=-1)``, i.e. x / max(|x|, 1e-12), faster when the last dim is strided."""
    return x / _clamped_norms(x).unsqueeze(-1)


def _attention_map(qkv, temperature, h, c, r):
    """A = softmax(T * <q_i, k_j> / (max(|q_i|, eps) max(|k_j|, eps))) per head, from ``qkv``
    (B, C + 2R, N): the norms over N are divided out of the small (c x r) logits (F.normalize
    semantics without normalised copies).  Returns A, the logits before T and the clamped norms
    (B, h, c), (B, h, r)."""
    B = qkv.shape[0]
    C = h * c
    q, k, _ = _heads(qkv, h, c, r)
    norms = _clamped_norms(qkv[:, :C + h * r])
    q_norm, k_norm = norms[:, :C].view(B, h, c), norms[:, C:].view(B, h, r)
    if B == 1 or h == 1:  # batch and head dims of these views merge without a copy
        scores = q @ k.transpose(-2, -1)
    else:  # one bmm per head: merging them would copy q and k
        scores = torch.stack([torch.bmm(q[:, i], k[:, i].transpose(1, 2)) for i in range(h)], dim=1)
    logits = scores / (q_norm.unsqueeze(-1) * k_norm.unsqueeze(-2))
    attn = (logits * temperature).softmax(dim=-1)                       # (B, h, c, r)
    return attn, logits, q_norm, k_norm


def _folded_attention(qkv, temperature, w_o, h, c, r, channels_last=False):
    """(W_o blockdiag_heads(A)) V_r, (B, C, N), from ``qkv`` (B, C + 2R, N); see the docstring.
    ``channels_last``: the result in (B, N, C) memory (computed as V_r^T M^T)."""
    B = qkv.shape[0]
    C, R = h * c, h * r
    attn, logits, q_norm, k_norm = _attention_map(qkv, temperature, h, c, r)
    mix = torch.einsum('ohi,bhij->bohj', w_o.view(C, h, c), attn).reshape(B, C, R)
    v = qkv[:, C + R:]
    out = torch.bmm(v.transpose(1, 2), mix.transpose(1, 2)).transpose(1, 2) if channels_last else torch.bmm(mix, v)
    return out, attn, logits, mix, q_norm, k_norm


class _FoldedAttention(torch.autograd.Function):
    """:func:`_folded_attention` with a hand-written backward (same forward ops, same values).

    With S = q k^T, L = S / (|q| |k|^T), Z = T L, A = softmax(Z), M = W_o blockdiag(A), y = M V:
    dV = M^T dy, dM = dy V^T (-> dA, dW_o), dZ = A (dA - rowsum(dA A)), dT = sum dZ L, dL = T dZ,
    dS = dL / (|q| |k|^T), and, the norms' share folded into per-channel scalars,
    dq = dS k + alpha q, alpha_i = -sum_j (dL L)_ij / |q_i|^2 (dk alike with column sums), zero
    where the eps clamp is active.  Only ``qkv`` (which autograd would keep anyway) and
    (c x r)-sized tensors are saved; dq, dk, dv are written into one buffer."""

    @staticmethod
    def forward(ctx, qkv, temperature, w_o, dims):
        out, *saved = _folded_attention(qkv, temperature, w_o, *dims)
        ctx.dims = dims[:3]
        ctx.save_for_backward(qkv, temperature, w_o, *saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qkv, temperature, w_o, attn, logits, mix, q_norm, k_norm = ctx.saved_tensors
        h, c, r = ctx.dims
        B, C = qkv.shape[0], h * c
        big = qkv.dtype                                   # full-size products in the input's dtype
        small = torch.promote_types(big, torch.float32)   # (c x r)-sized work in >= fp32
        g = grad_out.to(big)                              # (B, C, N)
        q, k, v = _heads(qkv, h, c, r)
        d_mix = torch.bmm(g, v.transpose(1, 2)).to(small).view(B, C, h, r)  # dM = dy V^T
        a = attn.to(small)
        d_attn = torch.einsum('ohi,bohj->bhij', w_o.view(C, h, c).to(small), d_mix)
        d_w_o = torch.einsum('bohj,bhij->ohi', d_mix, a).reshape(w_o.shape)
        d_z = a * (d_attn - (d_attn * a).sum(-1, keepdim=True))
        lg = logits.to(small)
        d_t = (d_z * lg).sum((0, 2, 3)).view(temperature.shape)
        d_l = d_z * temperature.to(small)
        qc, kc = q_norm.to(small), k_norm.to(small)       # max(|q_i|, eps), max(|k_j|, eps)
        d_s = (d_l / (qc.unsqueeze(-1) * kc.unsqueeze(-2))).to(big)        # (B, h, c, r)
        t = d_l * lg
        alpha = -t.sum(-1) / qc.square() * (qc > _EPS)    # (B, h, c); 0 where the clamp acted
        beta = -t.sum(-2) / kc.square() * (kc > _EPS)     # (B, h, r)
        m_t, alpha, beta = mix.to(big).transpose(1, 2), alpha.unsqueeze(-1).to(big), beta.unsqueeze(-1).to(big)
        if torch.compiler.is_compiling():  # Dynamo takes no strided out=: separate results, one cat
            dq = torch.stack([torch.bmm(d_s[:, i], k[:, i]) for i in range(h)], 1).addcmul_(q, alpha)
            dk = torch.stack([torch.bmm(d_s[:, i].transpose(1, 2), q[:, i]) for i in range(h)], 1).addcmul_(k, beta)
            d_qkv = torch.cat([dq.flatten(1, 2), dk.flatten(1, 2), torch.bmm(m_t, g)], dim=1)
        else:  # written in place into one buffer laid out like qkv
            d_qkv = torch.empty_like(qkv)
            dq, dk, dv = _heads(d_qkv, h, c, r)
            torch.bmm(m_t, g, out=dv)                                          # dV = M^T dy
            for i in range(h):
                torch.bmm(d_s[:, i], k[:, i], out=dq[:, i])                    # dq_i = dS_i k_i
                torch.bmm(d_s[:, i].transpose(1, 2), q[:, i], out=dk[:, i])    # dk_i = dS_i^T q_i
            dq.addcmul_(q, alpha)
            dk.addcmul_(k, beta)
        return d_qkv, d_t.to(temperature.dtype), d_w_o.to(w_o.dtype), None
