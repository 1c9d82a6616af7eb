"""Restormer-style paired training on top of BasicSR's ``SRModel``.

Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration" (CVPR 2022)
train with *progressive patches*: the run is split into stages of ``iters[j]`` iterations; in stage
``j`` every batch is trimmed to ``mini_batch_sizes[j]`` random samples and cropped (one random
window for the whole batch) to ``gt_sizes[j]`` pixels, so early stages see many small patches and
late stages few large ones.  The data loader always delivers ``batch_size_per_gpu`` patches of
``gt_size`` (the largest size); the options live in ``datasets.train`` as in the official code::

    mini_batch_sizes: [8, 5, 4, 2, 1, 1]
    iters: [92000, 64000, 48000, 36000, 36000, 24000]
    gt_size: 384
    gt_sizes: [128, 160, 192, 256, 320, 384]

Iteration ``i`` (1-based) is in the first stage ``j`` with ``i <= iters[0] + ... + iters[j]``; past
the last stage the last one holds.  Batch sizes are per GPU, as in BasicSR: per process under
DDP, times ``num_gpu`` in a single DataParallel process.  Also from the recipe:

- ``train.use_grad_clip``: clip the global gradient norm before each optimiser step, to
  ``train.grad_clip_norm`` (default 0.01, the official value);
- ``train.scheduler.type: CosineAnnealingRestartCyclicLR`` beside BasicSR's own schedulers;
- ``val.window_size``: pad inputs at test time (reflect) to a multiple of it and crop the output
  back (Restormer needs multiples of 8: three 2x downsamplings).

Everything else (losses, EMA, saving, validation) is BasicSR's ``SRModel``.
"""
import random

import torch
import torch.nn.functional as F
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from ..registry import register
from .lr_scheduler import build_scheduler

__all__ = ['ImageRestorationModel', 'progressive_stage', 'progressive_patch']


def progressive_stage(current_iter, iters):
    """Index of the progressive stage of 1-based iteration ``current_iter`` (last stage past the end)."""
    end = 0
    for j, n in enumerate(iters):
        end += n
        if current_iter <= end:
            return j
    return len(iters) - 1


def progressive_patch(current_iter, iters, mini_batch_sizes, gt_sizes):
    """(mini-batch size, gt patch size) used at 1-based iteration ``current_iter``."""
    j = progressive_stage(current_iter, iters)
    return mini_batch_sizes[j], gt_sizes[j]


def _check_progressive_options(train_opt, scale):
    """The progressive schedule from ``datasets.train`` as lists, or None; one clear error when inconsistent."""
    given = {'mini_batch_sizes': train_opt.get('mini_batch_sizes'), 'iters': train_opt.get('iters'),
             'gt_sizes': train_opt.get('gt_sizes')}
    missing = [k for k, v in given.items() if v is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise ValueError(f'datasets.train: progressive patches need mini_batch_sizes, iters and gt_sizes; '
                         f'missing {missing}')
    mini_batch_sizes, iters, gt_sizes = (list(v) for v in given.values())
    if not (len(mini_batch_sizes) == len(iters) == len(gt_sizes)):
        raise ValueError(f'datasets.train: mini_batch_sizes ({len(mini_batch_sizes)}), iters ({len(iters)}) and '
                         f'gt_sizes ({len(gt_sizes)}) need one entry per stage')
    gt_size, batch = train_opt.get('gt_size'), train_opt.get('batch_size_per_gpu')
    if gt_size is not None and max(gt_sizes) > gt_size:
        raise ValueError(f'datasets.train: gt_sizes {gt_sizes} exceed the loaded patch gt_size {gt_size}; '
                         f'set gt_size to max(gt_sizes)')
    if batch is not None and max(mini_batch_sizes) > batch:
        raise ValueError(f'datasets.train: mini_batch_sizes {mini_batch_sizes} exceed batch_size_per_gpu {batch}')
    if any(s % scale for s in gt_sizes):
        raise ValueError(f'datasets.train: every gt_sizes entry must be divisible by scale {scale}, got {gt_sizes}')
    return {'mini_batch_sizes': mini_batch_sizes, 'iters': iters, 'gt_sizes': gt_sizes}


@register(MODEL_REGISTRY)
class ImageRestorationModel(SRModel):
    """``SRModel`` + Restormer's progressive patches, gradient clipping, cyclic cosine schedule and
    test-time padding (see the module docstring for the options)."""

    def __init__(self, opt):
        self.progressive = None
        if opt.get('is_train') and 'train' in opt.get('datasets', {}):
            self.progressive = _check_progressive_options(opt['datasets']['train'], opt.get('scale', 1))
        self._logged_stage = None
        super().__init__(opt)

    # ---------------------------------------------------------------- training set-up
    def setup_optimizers(self):
        super().setup_optimizers()
        train_opt = self.opt['train']
        if train_opt.get('use_grad_clip', False):
            max_norm = float(train_opt.get('grad_clip_norm', 0.01))
            params = [p for p in self.net_g.parameters() if p.requires_grad]

            def clip_before_step(optimizer, args, kwargs):
                torch.nn.utils.clip_grad_norm_(params, max_norm)

            # SRModel.optimize_parameters calls backward() then step(): the hook runs in between.
            self.optimizer_g.register_step_pre_hook(clip_before_step)

    def setup_schedulers(self):
        scheduler_opt = self.opt['train']['scheduler']
        schedulers = [build_scheduler(optimizer, scheduler_opt) for optimizer in self.optimizers]
        if all(s is not None for s in schedulers):
            self.schedulers.extend(schedulers)
        else:
            super().setup_schedulers()  # BasicSR's own ones (raises for unknown names)

    # ---------------------------------------------------------------- progressive patches
    def _progressive_crop(self, current_iter):
        """Trim the fed batch to the stage's mini-batch and crop it to the stage's patch size."""
        schedule = self.progressive
        j = progressive_stage(current_iter, schedule['iters'])
        mini_batch, gt_size = schedule['mini_batch_sizes'][j], schedule['gt_sizes'][j]
        if not self.opt.get('dist') and self.opt.get('num_gpu', 0) > 1:
            mini_batch *= self.opt['num_gpu']  # DataParallel: BasicSR loads batch_size_per_gpu x num_gpu
        if self._logged_stage != j:
            get_root_logger().info(f'Progressive patches: stage {j} from iter {current_iter}: '
                                   f'patch {gt_size}, batch {mini_batch} per process')
            self._logged_stage = j
        if mini_batch < self.lq.size(0):
            keep = torch.tensor(sorted(random.sample(range(self.lq.size(0)), k=mini_batch)), device=self.lq.device)
            self.lq, self.gt = self.lq[keep], self.gt[keep]
        scale = self.opt.get('scale', 1)
        lq_size = gt_size // scale
        h, w = self.lq.shape[-2:]
        if lq_size < h or lq_size < w:
            top = random.randint(0, max(h - lq_size, 0))
            left = random.randint(0, max(w - lq_size, 0))
            self.lq = self.lq[..., top:top + lq_size, left:left + lq_size]
            self.gt = self.gt[..., top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]

    def optimize_parameters(self, current_iter):
        if self.progressive is not None:
            self._progressive_crop(current_iter)
        super().optimize_parameters(current_iter)

    # ---------------------------------------------------------------- testing
    def test(self):
        """BasicSR's test on the input padded (reflect) to a multiple of ``val.window_size``."""
        multiple = int((self.opt.get('val') or {}).get('window_size', 0) or 0)
        if multiple <= 1:
            return super().test()
        lq = self.lq
        h, w = lq.shape[-2:]
        pad_h, pad_w = -h % multiple, -w % multiple
        if pad_h or pad_w:
            mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
            self.lq = F.pad(lq, (0, pad_w, 0, pad_h), mode=mode)
        try:
            super().test()
        finally:
            self.lq = lq
        scale = self.opt.get('scale', 1)
        self.output = self.output[..., :h * scale, :w * scale]
