"""Image quality with the conventions of the SR literature, through BasicSR's own metric functions.

PSNR/SSIM are BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (MATLAB-compatible SSIM of Wang et
al., 2004, Gaussian window 11, sigma 1.5) on 8-bit images made with BasicSR's ``tensor2img``
convention (clamp to [0, 1], x255, round); ``psnr``/``ssim`` are on the Y channel of MATLAB's
``rgb2ycbcr`` (BasicSR's ``to_y_channel``, what ``test_y_channel=True`` applies) and
``psnr_rgb``/``ssim_rgb`` on the three colour channels, all with ``crop_border`` pixels removed on
each side (= scale by convention).

Two conventions (``CONVENTIONS``) differ only on a single-channel (grayscale) ground truth such as
Set14's ``bridge.png``:

- ``'basicsr'`` (default): BasicSR's test pipeline and the modern papers (SwinIR, DAT, ESC, HAT ...):
  the file is read as colour (``cv2.IMREAD_COLOR``, gray replicated) and scored on the rgb2ycbcr Y
  like any image.  Y = 16 + 219/255 * gray there, so errors shrink by 219/255 and that image's PSNR
  rises by 20*log10(255/219) = 1.32 dB over the gray-level score.
- ``'matlab'``: the MATLAB-era scripts behind the classic bicubic rows (EDSR/RCAN) score the gray
  level: the 3-channel output is reduced to its ITU-R BT.601 luma (OpenCV ``BGR2GRAY``, as MATLAB
  ``rgb2gray``, rounded to 8 bit; exact for a gray output) and both go to BasicSR's functions as
  one-channel images (``quality(..., gray=True)``).

LPIPS (Zhang et al., 2018) needs two sets of weights: the linear calibration layers, which ship
inside the ``lpips`` package, and the ImageNet backbone (AlexNet/VGG16/SqueezeNet), which
torchvision downloads.  ``LPIPSMetric`` only uses a backbone already on disk (an explicit file, or
torchvision's cache under ``$TORCH_HOME/hub/checkpoints``); otherwise it is unavailable and says
why, so a randomly initialised backbone never produces a number.
"""
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from basicsr.metrics.metric_util import to_y_channel
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim

QUALITY_METRICS = ('psnr', 'ssim', 'psnr_rgb', 'ssim_rgb', 'lpips')
CONVENTIONS = {
    'basicsr': 'BasicSR test pipeline (basicsr/test.py, modern papers): every image read as colour '
               '(cv2.IMREAD_COLOR, a grayscale file replicated) and scored on Y',
    'matlab': 'MATLAB-era tables (EDSR/RCAN bicubic rows): a single-channel ground truth scored on its gray level '
              '(20*log10(255/219) = 1.32 dB below its Y score), colour images on Y',
}


def check_convention(convention):
    """``convention`` if known, else ValueError naming the choices."""
    if convention not in CONVENTIONS:
        raise ValueError(f'unknown convention {convention!r}; choose from {", ".join(CONVENTIONS)}')
    return convention


def to_uint8(tensor):
    """1xCxHxW RGB float tensor -> HxWxC BGR uint8 with BasicSR's ``tensor2img`` convention (clamp
    to [0, 1], x255 in float32, round half to even, cast), computed in torch on the tensor's
    device so only the 8-bit image is copied (``tensor2img`` itself clamps its input in place)."""
    img = (tensor.detach()[0].float().clamp(0, 1) * 255.).round_().to(torch.uint8)
    return np.ascontiguousarray(img.flip(0).permute(1, 2, 0).cpu().numpy())


def quality(sr, gt, crop_border, metrics=('psnr', 'ssim'), gray=False, y_channel=True):
    """PSNR/SSIM (Y and/or RGB) of two 8-bit BGR images with BasicSR's ``calculate_psnr`` /
    ``calculate_ssim``; ``gray``: the ground truth is single-channel (scored on its gray level);
    ``y_channel=False``: ``psnr``/``ssim`` on the three channels too (BasicSR's ``test_y_channel: false``,
    e.g. Restormer's deblurring tables).

    The Y channel is computed once per image with BasicSR's ``to_y_channel`` (exactly what
    ``test_y_channel=True`` does inside each function, a per-pixel map, so cropping before or after
    is the same) and shared by PSNR and SSIM."""
    out = {}
    luma = None
    for name in metrics:
        if name == 'lpips':
            continue
        fn = calculate_psnr if name.startswith('psnr') else calculate_ssim
        if name.endswith('_rgb') or not y_channel:
            a, b = sr, gt
        else:
            if luma is None:
                if gray:
                    luma = cv2.cvtColor(sr, cv2.COLOR_BGR2GRAY)[..., None], gt[..., :1]
                else:
                    luma = to_y_channel(sr), to_y_channel(gt)
            a, b = luma
        out[name] = float(fn(a, b, crop_border=crop_border, input_order='HWC', test_y_channel=False))
    return out


_BACKBONES = {  # lpips net name -> (torchvision builder, weights enum name)
    'alex': ('alexnet', 'AlexNet_Weights'),
    'vgg': ('vgg16', 'VGG16_Weights'),
    'squeeze': ('squeezenet1_1', 'SqueezeNet1_1_Weights'),
}


def lpips_backbone_path(net='alex'):
    """Where torchvision caches the ImageNet backbone LPIPS uses (present or not)."""
    import torchvision
    weights = getattr(torchvision.models, _BACKBONES[net][1]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / 'checkpoints' / os.path.basename(weights.url)


class LPIPSMetric:
    """LPIPS when its weights are on disk, else ``available=False`` and a ``reason``.

    ``weights``: path to the torchvision backbone state dict (e.g. ``alexnet-owt-7be5be79.pth``);
    default: torchvision's cache.  Inputs are RGB tensors in [0, 1] (scaled to [-1, 1] here)."""

    def __init__(self, net='alex', weights=None, device='cpu'):
        self.net_name = net
        self.model = None
        self.reason = None
        try:
            import lpips
        except ImportError:
            self.reason = 'lpips package not installed (pip install lpips)'
            return
        if net not in _BACKBONES:
            self.reason = f'unknown LPIPS net {net!r} (choose from {sorted(_BACKBONES)})'
            return
        path = Path(weights) if weights else lpips_backbone_path(net)
        if not path.is_file():
            self.reason = (f'LPIPS {net} backbone weights not found at {path} (no download here: put the torchvision '
                           'ImageNet weights there, set TORCH_HOME, or pass their path)')
            return
        import torchvision
        backbone = getattr(torchvision.models, _BACKBONES[net][0])(weights=None)
        backbone.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        # lpips slices reuse the torchvision ``features`` modules under their original indices
        for slice_ in (getattr(model.net, f'slice{i}') for i in range(1, model.net.N_slices + 1)):
            for index, module in slice_.named_children():
                module.load_state_dict(backbone.features[int(index)].state_dict())
        self.model = model.eval().to(device)
        self.device = device
        self.source = str(path)

    @property
    def available(self):
        return self.model is not None

    @torch.no_grad()
    def __call__(self, sr, gt):
        sr, gt = sr.to(self.device), gt.to(self.device)
        return float(self.model(sr * 2 - 1, gt * 2 - 1).mean())


def bgr_uint8_to_rgb_tensor(img, crop_border=0):
    """8-bit BGR HWC -> 1x3xHxW RGB float in [0, 1], border cropped (the input LPIPS scores)."""
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    return torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).float()[None] / 255.
