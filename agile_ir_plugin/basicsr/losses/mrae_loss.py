"""Mean relative absolute error (MRAE), the training loss and main metric of spectral reconstruction
from RGB (NTIRE 2022 challenge; Cai et al., "MST++: Multi-stage Spectral-wise Transformer for
Efficient Spectral Reconstruction", CVPRW 2022).

    MRAE(pred, gt) = mean(|pred - gt| / gt)

as in MST++'s ``Loss_MRAE`` (no epsilon in the denominator).  Ground-truth values that are exactly 0
would give inf; like MST++'s ``Loss_MRAE_custom`` they are replaced by ``eps`` (1e-8) in the
denominator only, so the loss equals the official one whenever the ground truth has no zeros.
"""
import torch
from torch import nn
from basicsr.losses.loss_util import weighted_loss
from basicsr.utils.registry import LOSS_REGISTRY

from ..registry import register

__all__ = ['MRAELoss', 'relative_absolute_error']


def relative_absolute_error(pred, target, eps=1e-8):
    """Element-wise |pred - target| / target, exact zeros of ``target`` replaced by ``eps``."""
    if pred.shape != target.shape:
        raise ValueError(f'MRAE: prediction {tuple(pred.shape)} and ground truth {tuple(target.shape)} differ in shape')
    denominator = torch.where(target == 0, torch.full_like(target, eps), target)
    return (pred - target).abs() / denominator


@weighted_loss
def _mrae(pred, target, eps=1e-8):
    return relative_absolute_error(pred, target, eps)


@register(LOSS_REGISTRY)
class MRAELoss(nn.Module):
    """MRAE loss (MST++ convention, see the module docstring).

    Args:
        loss_weight (float): multiplier of the loss. Default: 1.0.
        reduction (str): 'none' | 'mean' | 'sum'. Default: 'mean'.
        eps (float): denominator used where the ground truth is exactly 0. Default: 1e-8.
    """

    def __init__(self, loss_weight=1.0, reduction='mean', eps=1e-8):
        super().__init__()
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f"MRAELoss: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.eps = eps

    def forward(self, pred, target, weight=None, **kwargs):
        """pred, target: (N, C, H, W); weight: optional element-wise weights (N, C or 1, H, W)."""
        return self.loss_weight * _mrae(pred, target, weight, reduction=self.reduction, eps=self.eps)
