"""ESC: Emulating Self-attention with Convolution for efficient image super-resolution.

Dongheon Lee, Seokju Yun, Youngmin Ro, "Emulating Self-attention with Convolution for Efficient
Image Super-Resolution", arXiv 2503.06671 (ICCV 2025).  Written from the paper and from the facts
(layer names, shapes, the forward computation) of the official code (github dslisleedh/ESC), so
that official checkpoints (``params`` / ``params_ema``) load with ``strict=True`` and give the
official outputs.

Variants (``network_g`` arguments, as in the official options; kernel 13, window 32, pdim 16,
5 conv blocks, exp_ratio 1.25):

============  ======  ========  =====  =========  ==============================
variant       class   n_blocks  dim    num_heads  params x2 / x3 / x4
============  ======  ========  =====  =========  ==============================
ESC           ESC     5         64     4          947K / 955K / 967,500
ESC-light     ESC     3         64     4          603.6K / 612K / 624K
ESC-FP        ESCFP   5         48     3          524K / 530K / 539K
============  ======  ========  =====  =========  ==============================

ESC-light is not a class: it is ``ESC`` with ``n_blocks=3`` (see ``VARIANTS``).

An ESC block: LN -> ConvFFN -> one (non-shifted) window self-attention (window 32, learnable
relative-position bias, reflect padding to a multiple of the window) -> ``conv_blocks`` x
[ConvFFN -> ConvAttn] with residuals -> LN -> 3x3 conv, plus the block skip.  ConvAttn
("convolutional attention") mixes only the first ``pdim`` channels: a 13x13 dense kernel shared
by every ConvAttn of the network (trained through the average of its 8 flips/rotations, folded in
once by ``convert()``) plus a per-sample 3x3 depthwise kernel predicted from the features
(avgpool -> 1x1 -> GELU -> 1x1, zero-initialised); a 1x1 conv then mixes all channels.  Output:
3x3 conv + pixel shuffle plus a nearest (ESC) or bicubic (ESC-FP) upsampled input.

Differences from the official code (none changes the function or the checkpoint layout):

- attention goes through ``agile_ir_plugin.ops.attention`` (``attn_backend``, default ``auto``:
  a fused kernel that takes the relative-position bias: on CUDA SDPA memory-efficient / cuDNN,
  on CPU the fused flash kernel, or exact chunked attention where no fused kernel takes a bias
  that needs a gradient; ``attn_backend: flex`` is the official Flex path); the official
  ``attn_type`` (Naive / SDPA / Flex) is accepted for option compatibility and ignored, all three
  compute the same function;
- any batch size in training *and* eval (the official eval path reshapes the dynamic kernel for
  batch 1 only), no in-place writes into the input of ConvAttn;
- while exporting (``torch.export`` / ONNX) the per-sample kernels run as a sum of shifted taps
  instead of a conv with groups=B*pdim (``per_sample_depthwise_conv``), so the exported graph
  keeps a dynamic batch; eager training and inference keep the (faster) grouped conv;
- images smaller than a window are padded by repeated reflection (the official single reflect
  pad raises there); the attention output is cropped back, so any H x W works;
- training keeps less for backward (same values and gradients): each ConvFFN keeps two of its
  three hidden maps (``_FFNMiddle`` recomputes the GELU between them) and the window attention's
  position bias is a ``HankelBias`` (the keys of each window taken in reversed order make it a
  strided view of the flipped table): on CPU the fused kernel gets it a block of query rows at
  a time, and the exact ``chunked`` backward copies each chunk's rows again, keeping neither the
  bias nor its gradient (only the small table); ESC x4 at 1x3x64x64: 386 -> 267 MiB kept, 0.28x
  the official Naive path's 938 MiB;
- x3/x4 training can start from the x2 ``params_ema`` as the official code does: the
  checkpoint's ``to_img`` (sub-pixel) conv is resized to this scale by ``resize_state_dict`` (see
  ``resize_to_img``), only when asked (BasicSR options: ``train.resize_pretrain_g: true``).  A plain
  ``load_state_dict`` of a checkpoint of another scale is a size-mismatch error, never a silent
  resize.
"""
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from agile_ir_plugin.ops.attention import attention
from agile_ir_plugin.ops.window import HankelBias, relative_position_index

__all__ = ['ESC', 'ESCFP']

logger = logging.getLogger(__name__)

#: Official hyper-parameters of the paper's variants (add ``upscaling_factor``).
VARIANTS = {
    'ESC': dict(arch='ESC', dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32,
                num_heads=4, exp_ratio=1.25),
    'ESC-light': dict(arch='ESC', dim=64, pdim=16, kernel_size=13, n_blocks=3, conv_blocks=5, window_size=32,
                      num_heads=4, exp_ratio=1.25),
    'ESC-FP': dict(arch='ESCFP', dim=48, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32,
                   num_heads=3, exp_ratio=1.25),
}


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------
class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map (eps 1e-6 as in the official code)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        # on a channels-last tensor both permutes are free (no copy)
        return F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


def _training_graph(x):
    """True when autograd records a graph through ``x`` (and nothing is being exported)."""
    return torch.is_grad_enabled() and x.requires_grad and not _exporting()


class _FFNMiddle(torch.autograd.Function):
    """``h = gelu(dwc(a)) + a`` with ``a = gelu(p)`` (ConvFFN's middle), keeping ``p`` and
    ``d = dwc(a)`` for backward and recomputing the elementwise ``a`` there (autograd would keep
    ``p``, ``a`` and ``d``).  The backward runs the ops autograd runs, in the same order."""

    @staticmethod
    def forward(ctx, p, weight, bias, padding):
        a = F.gelu(p)
        d = F.conv2d(a, weight, bias, padding=padding, groups=weight.shape[0])
        ctx.save_for_backward(p, d, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.gelu(d) + a

    @staticmethod
    def backward(ctx, grad):
        p, d, weight = ctx.saved_tensors
        need_p, need_w, need_b = ctx.needs_input_grad[:3]
        grad_d = torch.ops.aten.gelu_backward(grad, d)
        grad_a, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_d, F.gelu(p), weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1],
            [ctx.padding, ctx.padding], [1, 1], False, [0, 0], weight.shape[0], [need_p, need_w, need_b])
        grad_p = torch.ops.aten.gelu_backward(grad + grad_a, p) if need_p else None
        return grad_p, grad_w, grad_b, None


class ConvFFN(nn.Module):
    """1x1 expand -> GELU -> (depthwise k x k -> GELU) + skip -> 1x1 project.

    In training the middle keeps two of its three hidden-width tensors for backward and recomputes
    the cheap GELU in between (``_FFNMiddle``): the same values and gradients."""

    def __init__(self, dim, kernel_size, exp_ratio):
        super().__init__()
        hidden = int(dim * exp_ratio)
        self.proj = nn.Conv2d(dim, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.aggr = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        x = self.proj(x)
        if _training_graph(x) and not torch.compiler.is_compiling():
            x = _FFNMiddle.apply(x, self.dwc.weight, self.dwc.bias, self.dwc.padding[0])
        else:
            x = F.gelu(x)
            x = F.gelu(self.dwc(x)) + x
        return self.aggr(x)


def reflect_pad_to_multiple(x, multiple):
    """Reflect-pad the bottom/right of (B, C, H, W) to multiples of ``multiple``.

    Matches ``F.pad(mode='reflect')`` whenever that is defined (pad < size); a larger pad (image
    smaller than a window) is reached by reflecting repeatedly.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if torch.compiler.is_compiling() and h > multiple and w > multiple:
        # one pad, even of zero: no branch on the sizes' residues, so a compiled model with dynamic
        # H, W does not recompile for every new residue (same values as below: pad < size)
        return F.pad(x, (0, pad_w, 0, pad_h), mode='reflect')
    while pad_h or pad_w:
        step_h, step_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
        if (pad_h and step_h < 1) or (pad_w and step_w < 1):  # a 1-pixel side has nothing to reflect
            return F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
        x = F.pad(x, (0, step_w, 0, step_h), mode='reflect')
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


_RPE_INDEX = {}


def official_rpe_index(window_size, device):
    """(N*N,) index into a (heads, (2ws-1)^2) table, N = ws*ws, in the official order.

    The official code indexes by (key - query) offsets, i.e. the transpose of Swin's
    (query - key) ``relative_position_index``; cached per (window, device).
    """
    if torch.compiler.is_compiling():
        # traced: built in the graph (constant-folded); neither reading nor filling the cache, so the
        # graph does not depend on whether an eager call happened to fill it (a recompile)
        return relative_position_index(window_size).t().reshape(-1).to(device)
    key = (window_size, str(device))
    if key not in _RPE_INDEX:
        with torch.inference_mode(False):  # made under inference_mode it could not serve training later
            _RPE_INDEX[key] = relative_position_index(window_size).t().reshape(-1).to(device)
    return _RPE_INDEX[key]


class WindowAttention(nn.Module):
    """Multi-head self-attention in non-overlapping ``window_size`` windows with a learnable
    relative-position bias; input reflect-padded to whole windows and the output cropped back."""

    def __init__(self, dim, window_size, num_heads, attn_backend='auto', attn_fallback=False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads}).')
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.attn_backend, self.attn_fallback = attn_backend, attn_fallback
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.to_out = nn.Conv2d(dim, dim, 1)
        self.relative_position_bias = nn.Parameter(torch.randn(num_heads, (2 * window_size - 1) ** 2) * 1e-3)

    def position_bias(self):
        """(1, heads, N, N) additive bias gathered from the table."""
        n = self.window_size ** 2
        index = official_rpe_index(self.window_size, self.relative_position_bias.device)
        return self.relative_position_bias.index_select(1, index).view(1, self.num_heads, n, n)

    def forward(self, x):
        b, c, h, w = x.shape
        ws, heads = self.window_size, self.num_heads
        x = reflect_pad_to_multiple(x, ws)
        hp, wp = x.shape[-2:]
        nh, nw = hp // ws, wp // ws
        qkv = self.to_qkv(x).view(b, 3, heads, c // heads, nh, ws, nw, ws)
        # -> (3, B * windows, heads, ws*ws, head_dim), one copy
        qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * nh * nw, heads, ws * ws, c // heads)
        if torch.compiler.is_compiling() or _exporting():  # one traceable graph: the gathered bias
            bias = self.position_bias().to(x.dtype)
            out = attention(qkv[0], qkv[1], qkv[2], bias=bias, backend=self.attn_backend, fallback=self.attn_fallback)
        else:
            # keys (and values) of each window in reversed order: the (key - query) bias becomes a
            # strided view of the flipped table (HankelBias), copied ~5x faster than gathered; on
            # CPU never as a whole (rows at a time), and in training neither it nor its gradient is kept
            side = 2 * ws - 1
            table = self.relative_position_bias.view(heads, side, side).flip(1, 2)
            bias = HankelBias(table, ws, x.dtype)
            if torch.is_grad_enabled() and not _training_graph(qkv):  # autograd records, but not our
                bias = bias.materialize()  # training graph: the dense bias, through autograd
            out = attention(qkv[0], qkv[1].flip(2), qkv[2].flip(2), bias=bias, backend=self.attn_backend,
                            fallback=self.attn_fallback)
        out = out.view(b, nh, nw, heads, ws, ws, c // heads).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)
        return self.to_out(out[:, :, :h, :w])

    def extra_repr(self):
        return f'dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}'


def geometric_ensemble(kernel):
    """Average of a (O, I, k, k) kernel over its 8 flips/rotations (the dihedral group D4).

    ESC trains its shared large kernel through this average (feature-level geometric
    re-parameterisation from IGConv); it is a projection, so applying it twice changes nothing.
    """
    rot = torch.rot90(kernel, -1, (2, 3))
    views = (kernel, kernel.flip(3), kernel.flip(2), kernel.flip((2, 3)),
             rot, rot.flip(3), rot.flip(2), rot.flip((2, 3)))
    return sum(views) / 8


def _exporting():
    """True while ``torch.export`` (the dynamo ONNX exporter) or the legacy ONNX exporter traces."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def per_sample_depthwise_conv(x, kernel, taps=None):
    """Depthwise conv of each sample with its own kernels: ``x`` (B, C, H, W), ``kernel``
    (B, C, k, k), zero padding k // 2 (odd k), output (B, C, H, W).

    Two formulations of the same function (equal within float rounding, gradients included):

    - grouped (eager): one conv of the (1, B*C, H, W) view with groups=B*C, as the official code;
      the fastest in eager (ESC x4 on a 1x3x64x64 input, 1 CPU thread: the taps make the forward
      ~2% and the training step ~6% slower; one ConvAttn at batch 16: 6% / 24% slower);
    - ``taps`` (export): the sum over the k*k taps of ``kernel[:, :, i, j]`` times the padded input
      shifted by (i, j).  A Conv group count cannot depend on a symbolic batch (the exporter's Conv
      translation needs a static ``group``), so ``torch.export`` / ONNX export take this one, which
      keeps the batch dynamic.  Meant for small k (ESC's dynamic kernels are 3x3).

    ``taps=None`` picks ``taps`` exactly while exporting.
    """
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    if taps is None:
        taps = _exporting()
    if not taps:
        return F.conv2d(x.reshape(1, b * c, h, w), kernel.reshape(b * c, 1, k, k), padding=k // 2,
                        groups=b * c).view(b, c, h, w)
    p = k // 2
    xp = F.pad(x, (p, p, p, p))
    kernel = kernel.reshape(b, c, k * k, 1, 1)
    out = kernel[:, :, 0] * xp[:, :, :h, :w]
    for n in range(1, k * k):
        i, j = divmod(n, k)
        out = torch.addcmul(out, kernel[:, :, n], xp[:, :, i:i + h, j:j + w])
    return out


class ConvAttention(nn.Module):
    """ConvAttn on the first ``pdim`` channels: shared 13x13 dense kernel + per-sample 3x3
    depthwise kernel (avgpool -> 1x1 -> GELU -> 1x1, last conv zero-initialised)."""

    def __init__(self, pdim, kernel_size=13):
        super().__init__()
        self.pdim, self.lk_size, self.sk_size = pdim, kernel_size, 3
        self.dwc_proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(pdim, pdim // 2, 1),
            nn.GELU(),
            nn.Conv2d(pdim // 2, pdim * self.sk_size ** 2, 1),
        )
        nn.init.zeros_(self.dwc_proj[-1].weight)
        nn.init.zeros_(self.dwc_proj[-1].bias)

    def forward(self, x, lk_filter):
        b = x.shape[0]
        x1, x2 = x[:, :self.pdim], x[:, self.pdim:]
        dynamic = self.dwc_proj(x1).view(b, self.pdim, self.sk_size, self.sk_size)
        # only the 3x3 kernel is per sample; the 13x13 one is a plain dense conv
        x1 = F.conv2d(x1, lk_filter, padding=self.lk_size // 2) + per_sample_depthwise_conv(x1, dynamic)
        return torch.cat([x1, x2], dim=1)

    def extra_repr(self):
        return f'pdim={self.pdim}'


class ConvAttnWrapper(nn.Module):
    """ConvAttention followed by a 1x1 conv over all channels."""

    def __init__(self, dim, pdim, kernel_size=13):
        super().__init__()
        self.plk = ConvAttention(pdim, kernel_size)
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x, lk_filter):
        return self.aggr(self.plk(x, lk_filter))


class DecomposedConvAttention(nn.Module):
    """ESC-FP's ConvAttn: a shared 1x1 channel mix, then one depthwise k x k conv whose kernel is
    the shared spatial kernel plus the per-sample 3x3 dynamic kernel (zero-padded to k x k)."""

    def __init__(self, pdim, kernel_size=13):
        super().__init__()
        self.pdim, self.lk_size, self.sk_size = pdim, kernel_size, 3
        self.proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(pdim, pdim // 4, 1),
            nn.GELU(),
            nn.Conv2d(pdim // 4, pdim * self.sk_size ** 2, 1),
        )

    def forward(self, x, lk_channel, lk_spatial):
        b = x.shape[0]
        x1, x2 = x[:, :self.pdim], x[:, self.pdim:]
        dynamic = self.proj(x1).view(b, self.pdim, self.sk_size, self.sk_size)
        x1 = F.conv2d(x1, lk_channel)
        if _exporting():
            # the same function split by linearity (shared depthwise k x k + per-sample 3x3), so
            # that no Conv group count depends on the batch (see per_sample_depthwise_conv)
            x1 = (F.conv2d(x1, lk_spatial, padding=self.lk_size // 2, groups=self.pdim)
                  + per_sample_depthwise_conv(x1, dynamic, taps=True))
        else:  # fused: one grouped k x k conv with the 3x3 added at its centre (faster in eager)
            pad = (self.lk_size - self.sk_size) // 2
            kernel = F.pad(dynamic, (pad, pad, pad, pad)) + lk_spatial.view(1, self.pdim, self.lk_size, self.lk_size)
            x1 = per_sample_depthwise_conv(x1, kernel, taps=False)
        return torch.cat([x1, x2], dim=1)

    def extra_repr(self):
        return f'pdim={self.pdim}'


class DecomposedConvAttnWrapper(nn.Module):
    def __init__(self, dim, pdim, kernel_size=13):
        super().__init__()
        self.plk = DecomposedConvAttention(pdim, kernel_size)
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x, lk_channel, lk_spatial):
        return self.aggr(self.plk(x, lk_channel, lk_spatial))


class ESCBlock(nn.Module):
    """LN -> ConvFFN -> +window attention -> conv_blocks x (+ConvAttn(ConvFFN(LN?))) -> LN -> 3x3
    conv, plus the block skip.  ``fp`` selects ESC-FP's ConvAttn and proj width (1.5 vs 2)."""

    def __init__(self, dim, pdim, conv_blocks, kernel_size, window_size, num_heads, exp_ratio,
                 attn_backend='auto', use_ln=False, fp=False, attn_fallback=False):
        super().__init__()
        self.ln_proj = LayerNorm2d(dim)
        self.proj = ConvFFN(dim, 3, 1.5 if fp else 2)
        self.ln_attn = LayerNorm2d(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, attn_backend, attn_fallback)
        self.lns = nn.ModuleList([LayerNorm2d(dim) if (use_ln or fp) else nn.Identity() for _ in range(conv_blocks)])
        conv_attn = DecomposedConvAttnWrapper if fp else ConvAttnWrapper
        self.pconvs = nn.ModuleList([conv_attn(dim, pdim, kernel_size) for _ in range(conv_blocks)])
        self.convffns = nn.ModuleList([ConvFFN(dim, 3, exp_ratio) for _ in range(conv_blocks)])
        self.ln_out = LayerNorm2d(dim)
        self.conv_out = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x, *lk):
        skip = x
        x = self.proj(self.ln_proj(x))
        x = x + self.attn(self.ln_attn(x))
        for ln, pconv, convffn in zip(self.lns, self.pconvs, self.convffns):
            x = x + pconv(convffn(ln(x)), *lk)
        return self.conv_out(self.ln_out(x)) + skip


# ------------------------------------------------------------------------------------------------
# x2 -> x3/x4 initialisation
# ------------------------------------------------------------------------------------------------
def resize_to_img(state_dict, scale, prefix='to_img.'):
    """Resize a sub-pixel output conv (``to_img``, 3*s*s output channels) to ``scale``.

    As the official code does when x3/x4 training starts from the x2 checkpoint: the weights of
    each (input channel, tap, colour) form an s x s sub-pixel grid, resized bilinearly
    (align_corners=False) to scale x scale.  Returns a new dict (others entries shared).
    """
    weight, bias = state_dict[prefix + 'weight'], state_dict[prefix + 'bias']
    out_ch, cin, kh, kw = weight.shape
    src = round((out_ch // 3) ** 0.5)
    if src == scale:
        return state_dict
    grid = weight.view(3, src, src, cin, kh, kw).permute(3, 4, 5, 0, 1, 2).reshape(cin * kh * kw, 3, src, src)
    grid = F.interpolate(grid.float(), size=(scale, scale), mode='bilinear', align_corners=False).to(weight.dtype)
    new_weight = grid.view(cin, kh, kw, 3, scale, scale).permute(3, 4, 5, 0, 1, 2).reshape(3 * scale ** 2, cin, kh, kw)
    new_bias = F.interpolate(bias.view(1, 3, src, src).float(), size=(scale, scale), mode='bilinear',
                             align_corners=False).to(bias.dtype).reshape(-1)
    state_dict = dict(state_dict)
    state_dict[prefix + 'weight'], state_dict[prefix + 'bias'] = new_weight.contiguous(), new_bias
    return state_dict


class _ExplicitResize:
    """``resize_state_dict``: a checkpoint of another scale made to fit, for callers that ask for it."""

    def resize_state_dict(self, state_dict):
        """``state_dict`` with its ``to_img`` resized to this network's scale (x2 -> x3/x4); unchanged
        when it already fits.  ``load_state_dict`` never does this by itself."""
        weight = state_dict.get('to_img.weight')
        if weight is None or weight.shape[0] == 3 * self.upscaling_factor ** 2:
            return state_dict
        src = round((weight.shape[0] // 3) ** 0.5)
        logger.info('Resizing to_img from x%d to x%d (sub-pixel weights, bilinear), as asked', src,
                    self.upscaling_factor)
        return resize_to_img(state_dict, self.upscaling_factor)


# ------------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------------
class ESC(_ExplicitResize, nn.Module):
    """ESC / ESC-light (``n_blocks=3``) for x``upscaling_factor`` super-resolution.

    Args (official names): dim, pdim (channels ConvAttn mixes), kernel_size (shared dense kernel),
    n_blocks, conv_blocks (ConvFFN+ConvAttn pairs per block), window_size, num_heads,
    upscaling_factor, exp_ratio (ConvFFN width), attn_type (official Naive/SDPA/Flex; accepted and
    ignored: see ``attn_backend``), use_ln (LayerNorm before each ConvFFN; official default False).
    attn_backend: ``agile_ir_plugin.ops.attention`` backend, ``'auto'`` picks a fused exact one (and
    logs which and why once).  attn_fallback: let a fused kernel that fails at run time fall back
    to the exact ``chunked`` backend (default False: that failure is an error naming the inputs).
    """

    def __init__(self, dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32, num_heads=4,
                 upscaling_factor=4, exp_ratio=1.25, attn_type=None, use_ln=False, attn_backend='auto',
                 attn_fallback=False):
        super().__init__()
        self.upscaling_factor = upscaling_factor
        self.attn_type = attn_type  # kept for reference only
        self.plk_filter = nn.Parameter(torch.empty(pdim, pdim, kernel_size, kernel_size))
        nn.init.orthogonal_(self.plk_filter)  # the official init; stabilises early training
        self.converted = False
        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.ModuleList([
            ESCBlock(dim, pdim, conv_blocks, kernel_size, window_size, num_heads, exp_ratio, attn_backend, use_ln,
                     attn_fallback=attn_fallback)
            for _ in range(n_blocks)])
        self.last = nn.Conv2d(dim, dim, 3, padding=1)
        self.to_img = nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, padding=1)

    def shared_kernel(self):
        """The 13x13 kernel the ConvAttns use: the 8-way average, or the kernel once converted."""
        return self.plk_filter if self.converted else geometric_ensemble(self.plk_filter)

    @torch.no_grad()
    def convert(self):
        """Fold the 8-way flip/rotate average into ``plk_filter`` for inference (same outputs).

        Idempotent; the state-dict layout is unchanged (as the official ``convert``).
        """
        if not self.converted:
            self.plk_filter.copy_(geometric_ensemble(self.plk_filter))
            self.converted = True
        return self

    def forward(self, x):
        feat = self.proj(x)
        skip = feat
        lk = self.shared_kernel()
        for block in self.blocks:
            feat = block(feat, lk)
        feat = self.last(feat) + skip
        s = self.upscaling_factor
        return F.pixel_shuffle(self.to_img(feat) + x.repeat_interleave(s * s, dim=1), s)


class ESCFP(_ExplicitResize, nn.Module):
    """ESC-FP: ESC with the decomposed ConvAttn (shared 1x1 ``lk_channel`` + depthwise
    ``lk_spatial`` fused with the dynamic kernel), LayerNorm before each ConvFFN and at the end,
    and a bicubic skip.  Same arguments as ``ESC`` (official defaults dim 48, 3 heads)."""

    def __init__(self, dim=48, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32, num_heads=3,
                 upscaling_factor=4, exp_ratio=1.25, attn_type=None, attn_backend='auto', attn_fallback=False):
        super().__init__()
        self.upscaling_factor = upscaling_factor
        self.attn_type = attn_type
        self.lk_channel = nn.Parameter(torch.randn(pdim, pdim, 1, 1))
        self.lk_spatial = nn.Parameter(torch.empty(pdim, 1, kernel_size, kernel_size))
        nn.init.orthogonal_(self.lk_spatial)
        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.ModuleList([
            ESCBlock(dim, pdim, conv_blocks, kernel_size, window_size, num_heads, exp_ratio, attn_backend, fp=True,
                     attn_fallback=attn_fallback)
            for _ in range(n_blocks)])
        self.ln_last = LayerNorm2d(dim)
        self.last = nn.Conv2d(dim, dim, 3, padding=1)
        self.to_img = nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, padding=1)

    @torch.no_grad()
    def convert(self):
        """Nothing to fold: ESC-FP's kernels are already used as trained.  Kept for a uniform API."""
        return self

    def forward(self, x):
        feat = self.proj(x)
        skip = feat
        for block in self.blocks:
            feat = block(feat, self.lk_channel, self.lk_spatial)
        feat = self.last(self.ln_last(feat)) + skip
        s = self.upscaling_factor
        return F.pixel_shuffle(self.to_img(feat), s) + F.interpolate(x, scale_factor=s, mode='bicubic')
