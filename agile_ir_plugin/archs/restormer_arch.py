"""Restormer with its original MDTA attention or with GLMHA.

Paper: S. W. Zamir, A. Arora, S. Khan, M. Hayat, F. S. Khan, M.-H. Yang, "Restormer: Efficient
Transformer for High-Resolution Image Restoration", CVPR 2022 (arXiv 2111.09881).
With ``attn='mdta'`` (default) the module names and shapes are those of the official
checkpoints (swz30/Restormer, key ``params``), which load with ``strict=True``
(26,126,644 parameters for the defaults).  With ``attn='glmha'`` every MDTA is replaced by
:class:`~agile_ir_plugin.archs.glmha.GLMHA` (see there); everything else is unchanged.

Unlike the official network, ``forward`` accepts any H, W: the input is reflect-padded to a
multiple of 8 (three 2x downsamplings) and the output cropped back, which is what the official
test scripts do outside the network; for sizes that are multiples of 8 it is the identity.
"""
import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.window import pad_to_multiple
from .glmha import GLMHA, l2_normalize, resolve_preset

__all__ = ['Restormer']


def _per_level(value, n, name):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f'{name} must be a number or a list of {n} values (one per level), got {value!r}.')
    return values


def load_official_restormer(model, checkpoint, strict=True, assign=False):
    """Load an official Restormer checkpoint (a path, or a loaded dict with key ``params`` or a
    bare state dict) into ``model``, ``strict=True`` by default (layouts read by
    ``agile_ir_plugin.checkpoint.extract_state_dict``, pure torch)."""
    from ..checkpoint import extract_state_dict, load_checkpoint
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(checkpoint)
    state = extract_state_dict(checkpoint)[0]
    return model.load_state_dict(state, strict=strict, assign=assign)


# ---------------------------------------------------------------------------------------------
# Building blocks
class BiasFreeLayerNorm(nn.Module):
    """x / sqrt(var_C(x) + 1e-5) * weight (no centring in the output, as in Restormer)."""

    def __init__(self, normalized_shape):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.weight = nn.Parameter(torch.ones(normalized_shape))

    def forward(self, x):  # (..., C)
        return x * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight


class WithBiasLayerNorm(nn.Module):
    """(x - mean_C) / sqrt(var_C + 1e-5) * weight + bias, i.e. a standard LayerNorm over C."""

    def __init__(self, normalized_shape):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x):  # (..., C)
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, eps=1e-5)


class LayerNorm(nn.Module):
    """Channel LayerNorm on (B, C, H, W) maps ('WithBias' or 'BiasFree')."""

    def __init__(self, dim, LayerNorm_type):
        super().__init__()
        self.body = BiasFreeLayerNorm(dim) if LayerNorm_type == 'BiasFree' else WithBiasLayerNorm(dim)

    def forward(self, x):
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network: 1x1 -> 3x3 depthwise -> GELU(x1) * x2 -> 1x1."""

    def __init__(self, dim, ffn_expansion_factor, bias):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention: attention over the C/h channels of each head.

    q, k, v = dw3x3(1x1(x)); q, k L2-normalised over HW; softmax(temperature * q k^T) v; 1x1.
    Written out as in the official code rather than through ``ops.attention``: per head the
    "tokens" are the c = C/h channels and their length is HW, so the attention map is only c x c
    while the token length is huge, a shape SDPA's CPU kernels handle slower than two plain matmuls;
    and the learnable temperature scales the small (c x c) logits instead of a full-size q, which
    autograd would otherwise keep for backward (one more C x HW tensor per block).  In the network
    q/k/v come channels-last (HW strided), where ``l2_normalize`` is F.normalize computed faster.
    """

    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).reshape(B, 3, self.num_heads, C // self.num_heads, H * W).unbind(1)
        q, k = l2_normalize(q), l2_normalize(k)    # F.normalize over HW (strided when channels-last)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)   # (B, h, c, c)
        return self.project_out((attn @ v).reshape(B, C, H, W))


class TransformerBlock(nn.Module):
    """x + attn(norm1(x)); x + ffn(norm2(x)) with attn = MDTA or GLMHA."""

    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type, attn='mdta', glmha=None):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        if attn == 'mdta':
            self.attn = MDTA(dim, num_heads, bias)
        elif attn == 'glmha':
            self.attn = GLMHA(dim, num_heads, bias=bias, dwconv=True, **(glmha or {}))
        else:
            raise ValueError(f"Restormer attn must be 'mdta' or 'glmha', got {attn!r}.")
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_c=3, embed_dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    """3x3 conv to C/2 then pixel-unshuffle: (C, H, W) -> (2C, H/2, W/2)."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv to 2C then pixel-shuffle: (C, H, W) -> (C/2, 2H, 2W)."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


# ---------------------------------------------------------------------------------------------
# Network
class Restormer(nn.Module):
    """Restormer (4-level U-Net of transformer blocks), official argument names plus ``attn``.

    Args beyond the official ones (``inp_channels, out_channels, dim, num_blocks,
    num_refinement_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type, dual_pixel_task``):
        attn: 'mdta' (original, checkpoint-compatible) or 'glmha', or one per level [L1, L2, L3, L4].
        glmha_preset: None, 'default' (GLMHA everywhere, rank c/2) or 'paper' (the paper's budget:
            GLMHA at levels 2 and 3 only, ranks 3/8 and 5/8 of c; see ``glmha.PRESETS``); sets
            ``attn`` per level and ``glmha_reduction`` (give neither with it).
        glmha_reduction: channels-per-head / rank, one number or one per level [L1, L2, L3, L4]
            (level 1 covers encoder_level1, decoder_level1 and the refinement blocks); None = 2.
        glmha_rank: absolute rank per head, one per level (overrides the reduction); None = use it.
        glmha_calib_reduction: hidden width of the calibration network = C // this (min 8).
        glmha_calibration: False for static low-rank projections (ablation).
    """

    def __init__(self, inp_channels=3, out_channels=3, dim=48, num_blocks=(4, 6, 6, 8), num_refinement_blocks=4,
                 heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, bias=False, LayerNorm_type='WithBias',
                 dual_pixel_task=False, attn='mdta', glmha_reduction=None, glmha_rank=None,
                 glmha_calib_reduction=16, glmha_calibration=True, glmha_preset=None):
        super().__init__()
        attn, glmha_reduction = resolve_preset('Restormer', glmha_preset, attn, glmha_reduction, glmha_rank)
        attns = _per_level(attn, 4, 'attn')
        reductions = _per_level(2.0 if glmha_reduction is None else glmha_reduction, 4, 'glmha_reduction')
        ranks = _per_level(glmha_rank, 4, 'glmha_rank')

        def blocks(level, n, channels):
            opts = dict(reduction=reductions[level], rank=ranks[level], calib_reduction=glmha_calib_reduction,
                        calibration=glmha_calibration)
            return nn.Sequential(*[
                TransformerBlock(channels, heads[level], ffn_expansion_factor, bias, LayerNorm_type, attns[level], opts)
                for _ in range(n)])

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = blocks(0, num_blocks[0], dim)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = blocks(1, num_blocks[1], dim * 2)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = blocks(2, num_blocks[2], dim * 4)
        self.down3_4 = Downsample(dim * 4)
        self.latent = blocks(3, num_blocks[3], dim * 8)

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = blocks(2, num_blocks[2], dim * 4)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = blocks(1, num_blocks[1], dim * 2)
        self.up2_1 = Upsample(dim * 2)  # level 1 keeps 2 * dim channels (no channel reduction)
        self.decoder_level1 = blocks(0, num_blocks[0], dim * 2)
        self.refinement = blocks(0, num_refinement_blocks, dim * 2)

        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img):
        H, W = inp_img.shape[-2:]
        inp_img = pad_to_multiple(inp_img, 8)

        inp_enc_level1 = self.patch_embed(inp_img)
        out_enc_level1 = self.encoder_level1(inp_enc_level1)
        out_enc_level2 = self.encoder_level2(self.down1_2(out_enc_level1))
        out_enc_level3 = self.encoder_level3(self.down2_3(out_enc_level2))
        latent = self.latent(self.down3_4(out_enc_level3))

        x = self.reduce_chan_level3(torch.cat([self.up4_3(latent), out_enc_level3], 1))
        x = self.decoder_level3(x)
        x = self.reduce_chan_level2(torch.cat([self.up3_2(x), out_enc_level2], 1))
        x = self.decoder_level2(x)
        x = self.decoder_level1(torch.cat([self.up2_1(x), out_enc_level1], 1))
        x = self.refinement(x)

        if self.dual_pixel_task:
            out = self.output(x + self.skip_conv(inp_enc_level1))
        else:
            out = self.output(x) + inp_img
        return out[..., :H, :W]
