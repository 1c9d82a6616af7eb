"""MST++ (spectral reconstruction from RGB) with its original S-MSA attention or with GLMHA.

Paper: Y. Cai, J. Lin, Z. Lin, H. Wang, Y. Zhang, H. Pfister, R. Timofte, L. Van Gool, "MST++:
Multi-stage Spectral-wise Transformer for Efficient Spectral Reconstruction", CVPRW 2022
(NTIRE 2022 winner).  With ``attn='smsa'`` (default) the module names and shapes are those of
the official checkpoints (caiyuanhao1998/MST-plus-plus, ``state_dict``, keys possibly prefixed
``module.``; see :func:`load_official_mstpp`), 1,619,625 parameters for the defaults.  With
``attn='glmha'`` every S-MSA is replaced by :class:`~agile_ir_plugin.archs.glmha.GLMHA` (no
depthwise conv on q/k/v, MST++'s positional branch kept, output-projection bias kept).

Layout: three cascaded MST U-Nets (2 downsamplings, one MSAB per level), each block working on
channels-last (B, H, W, C) maps as in the official code; inputs of any size are reflect-padded to
a multiple of 8 and the output cropped back (the official forward does the same).
"""
import torch
import torch.nn as nn

from ..ops.window import pad_to_multiple
from .glmha import GLMHA, CalibrationNetwork, l2_normalize, resolve_preset

__all__ = ['MSTPlusPlus']


def official_mstpp_state_dict(checkpoint):
    """The parameters of an official MST++ checkpoint (path, ``{'state_dict': ...}`` or a bare
    state dict), with the ``module.`` prefix of DataParallel training removed
    (``agile_ir_plugin.checkpoint.extract_state_dict``, pure torch)."""
    from ..checkpoint import extract_state_dict, load_checkpoint
    if not isinstance(checkpoint, dict):
        return extract_state_dict(load_checkpoint(checkpoint), None, str(checkpoint))[0]
    return extract_state_dict(checkpoint)[0]


def load_official_mstpp(model, checkpoint, strict=True):
    """Load an official MST++ checkpoint into ``model`` (``strict=True`` by default)."""
    return model.load_state_dict(official_mstpp_state_dict(checkpoint), strict=strict)


def _per_level(value, n, name):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f'{name} must be a number or a list of {n} values (one per level), got {value!r}.')
    return values


# ---------------------------------------------------------------------------------------------
# Building blocks (channels-last (B, H, W, C) unless said otherwise)
class SMSA(nn.Module):
    """Spectral-wise multi-head self-attention (S-MSA, named MS_MSA officially).

    Per head the d = dim_head spectral channels are the tokens (length HW): q, k L2-normalised
    over HW, A = softmax(rescale * k q^T) (rows indexed by k, as in the official ``K^T Q``),
    out = proj(A v) + pos_emb(v), pos_emb = dw3x3 -> GELU -> dw3x3 on the (full) v map.
    Written out as in the official code rather than through ``ops.attention`` (a d x d map over
    tokens of length HW, a shape SDPA's CPU kernels handle slower than two plain matmuls), with the
    learnable per-head ``rescale`` on the small (d x d) logits, not on a full-size k that autograd
    would keep.  ``A v`` comes out as (B, h, d, HW), i.e. channels-first (B, C, HW): the output
    projection reads it through a transposed view instead of a channels-last copy.
    """

    def __init__(self, dim, dim_head, heads):
        super().__init__()
        self.num_heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_k = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_v = nn.Linear(dim, dim_head * heads, bias=False)
        self.rescale = nn.Parameter(torch.ones(heads, 1, 1))
        self.proj = nn.Linear(dim_head * heads, dim, bias=True)
        self.pos_emb = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim), nn.GELU(),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim))

    def forward(self, x):
        B, H, W, C = x.shape
        x = x.reshape(B, H * W, C)
        v_inp = self.to_v(x)

        def heads(t):  # (B, HW, h d) -> (B, h, d, HW)
            return t.reshape(B, H * W, self.num_heads, self.dim_head).permute(0, 2, 3, 1)

        q = l2_normalize(heads(self.to_q(x)))                               # F.normalize over HW
        k = l2_normalize(heads(self.to_k(x)))
        attn = ((k @ q.transpose(-2, -1)) * self.rescale).softmax(dim=-1)   # (B, h, d, d), A = K^T Q
        out = (attn @ heads(v_inp)).reshape(B, C, H * W)                    # (B, h, d, HW): a view
        out = self.proj(out.transpose(1, 2)).view(B, H, W, C)
        pos = self.pos_emb(v_inp.reshape(B, H, W, C).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return out + pos


class ChannelsLastGLMHA(nn.Module):
    """GLMHA (channels-first) applied to a channels-last map; parameters live in ``.attn``."""

    def __init__(self, **kwargs):
        super().__init__()
        self.attn = GLMHA(**kwargs)

    def forward(self, x):
        return self.attn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class FeedForward(nn.Module):
    """1x1 (x4) -> GELU -> dw3x3 -> GELU -> 1x1 on a channels-last map."""

    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mult, 1, 1, bias=False), nn.GELU(),
            nn.Conv2d(dim * mult, dim * mult, 3, 1, 1, bias=False, groups=dim * mult), nn.GELU(),
            nn.Conv2d(dim * mult, dim, 1, 1, bias=False))

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.fn(self.norm(x))


class MSAB(nn.Module):
    """``num_blocks`` x (x + attn(x); x + ffn(norm(x))) on a channels-first map."""

    def __init__(self, dim, dim_head, heads, num_blocks, attn='smsa', glmha=None):
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(num_blocks):
            if attn == 'smsa':
                att = SMSA(dim, dim_head, heads)
            elif attn == 'glmha':
                att = ChannelsLastGLMHA(dim=dim, num_heads=heads, bias=False, proj_bias=True, dwconv=False,
                                        pos_emb=True, **(glmha or {}))
            else:
                raise ValueError(f"MSTPlusPlus attn must be 'smsa' or 'glmha', got {attn!r}.")
            self.blocks.append(nn.ModuleList([att, PreNorm(dim, FeedForward(dim))]))

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        for attn, ff in self.blocks:
            x = attn(x) + x
            x = ff(x) + x
        return x.permute(0, 3, 1, 2)


class MST(nn.Module):
    """One MST U-Net: embedding, ``stage`` encoder levels, bottleneck, decoder, mapping + skip."""

    def __init__(self, in_dim=31, out_dim=31, dim=31, stage=2, num_blocks=(2, 4, 4), attn='smsa', glmha_levels=None):
        super().__init__()
        self.dim, self.stage = dim, stage
        glmha_levels = glmha_levels or [None] * (stage + 1)
        attns = list(attn) if isinstance(attn, (list, tuple)) else [attn] * (stage + 1)
        self.embedding = nn.Conv2d(in_dim, dim, 3, 1, 1, bias=False)

        self.encoder_layers = nn.ModuleList()
        dim_stage = dim
        for i in range(stage):
            self.encoder_layers.append(nn.ModuleList([
                MSAB(dim_stage, dim, dim_stage // dim, num_blocks[i], attns[i], glmha_levels[i]),
                nn.Conv2d(dim_stage, dim_stage * 2, 4, 2, 1, bias=False)]))
            dim_stage *= 2
        self.bottleneck = MSAB(dim_stage, dim, dim_stage // dim, num_blocks[-1], attns[stage], glmha_levels[stage])

        self.decoder_layers = nn.ModuleList()
        for i in range(stage):
            level = stage - 1 - i
            self.decoder_layers.append(nn.ModuleList([
                nn.ConvTranspose2d(dim_stage, dim_stage // 2, stride=2, kernel_size=2, padding=0, output_padding=0),
                nn.Conv2d(dim_stage, dim_stage // 2, 1, 1, bias=False),
                MSAB(dim_stage // 2, dim, (dim_stage // 2) // dim, num_blocks[level], attns[level], glmha_levels[level])]))
            dim_stage //= 2
        self.mapping = nn.Conv2d(dim, out_dim, 3, 1, 1, bias=False)
        self._init_weights()

    def _init_weights(self):
        """Official init: Linear ~ trunc_normal(std 0.02), bias 0; LayerNorm 1/0.  GLMHA's 1x1
        projections get the same init as the Linear layers they replace; its calibration network
        stays at the identity."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, GLMHA):
                for conv in (m.qkv, m.project_out):
                    nn.init.trunc_normal_(conv.weight, std=.02)
                    if conv.bias is not None:
                        nn.init.zeros_(conv.bias)
        for m in self.modules():
            if isinstance(m, CalibrationNetwork):
                nn.init.zeros_(m.fc2.weight)
                nn.init.zeros_(m.fc2.bias)

    def forward(self, x):
        fea = self.embedding(x)
        skips = []
        for msab, down in self.encoder_layers:
            fea = msab(fea)
            skips.append(fea)
            fea = down(fea)
        fea = self.bottleneck(fea)
        for i, (up, fusion, msab) in enumerate(self.decoder_layers):
            fea = msab(fusion(torch.cat([up(fea), skips[self.stage - 1 - i]], dim=1)))
        return self.mapping(fea) + x


# ---------------------------------------------------------------------------------------------
# Network
class MSTPlusPlus(nn.Module):
    """MST++: conv_in -> ``stage`` cascaded MSTs -> conv_out, + the conv_in features.

    Args beyond the official ones (``in_channels, out_channels, n_feat, stage``):
        attn: 'smsa' (original, checkpoint-compatible) or 'glmha', or one per U-Net level.
        glmha_preset: None, 'default' (GLMHA everywhere, rank c/2) or 'paper' (GLMHA at the middle
            level only, rank c/2; see ``glmha.PRESETS``); sets ``attn`` per level and
            ``glmha_reduction`` (give neither with it).
        glmha_reduction: channels-per-head / rank, one number or one per U-Net level [31, 62, 124
            channels for n_feat 31] (every head has n_feat channels); None = 2.
        glmha_rank: absolute rank per head, one per level (overrides the reduction).
        glmha_calib_reduction, glmha_calibration: see :class:`GLMHA`.
    ``out_channels`` must equal ``n_feat`` (the output adds the conv_in features), as officially.
    """

    def __init__(self, in_channels=3, out_channels=31, n_feat=31, stage=3, attn='smsa', glmha_reduction=None,
                 glmha_rank=None, glmha_calib_reduction=16, glmha_calibration=True, glmha_preset=None):
        super().__init__()
        if out_channels != n_feat:
            raise ValueError(f'MSTPlusPlus needs out_channels == n_feat (output adds the conv_in features), '
                             f'got {out_channels} and {n_feat}.')
        self.stage = stage
        attn, glmha_reduction = resolve_preset('MSTPlusPlus', glmha_preset, attn, glmha_reduction, glmha_rank)
        _per_level(attn, 3, 'attn')
        reductions = _per_level(2.0 if glmha_reduction is None else glmha_reduction, 3, 'glmha_reduction')
        ranks = _per_level(glmha_rank, 3, 'glmha_rank')
        levels = [dict(reduction=reductions[i], rank=ranks[i], calib_reduction=glmha_calib_reduction,
                       calibration=glmha_calibration) for i in range(3)]
        self.conv_in = nn.Conv2d(in_channels, n_feat, kernel_size=3, padding=1, bias=False)
        self.body = nn.Sequential(*[MST(n_feat, n_feat, n_feat, stage=2, num_blocks=(1, 1, 1), attn=attn,
                                        glmha_levels=levels) for _ in range(stage)])
        self.conv_out = nn.Conv2d(n_feat, out_channels, kernel_size=3, padding=1, bias=False)

    def forward(self, x):
        H, W = x.shape[-2:]
        x = pad_to_multiple(x, 8)
        x = self.conv_in(x)
        out = self.conv_out(self.body(x)) + x
        return out[..., :H, :W]
