"""Training and validation of RGB -> hyperspectral reconstruction (MST++, Cai et al., CVPRW 2022).

BasicSR's ``SRModel`` validates by converting outputs to uint8 RGB images, which cannot represent a
31-band cube.  ``SpectralModel`` keeps everything of :class:`ImageRestorationModel` (and so of
``SRModel``: losses such as ``MRAELoss``, optimisers, schedulers, EMA, checkpoints) and replaces
validation: each metric of ``val.metrics`` (``calculate_mrae``, ``calculate_rmse``,
``calculate_spectral_psnr`` or any registered metric taking ``(img, img2, **opt)``) is called on the
float output and ground-truth tensors (N, C, H, W), averaged over the images as MST++ does, and
logged with BasicSR's best-metric bookkeeping (mark MRAE and RMSE ``better: lower``).  With
``save_img`` the predicted cubes are written as MATLAB ``.mat`` files (variable ``cube``,
(H, W, C), clipped to [0, 1] like MST++'s test script) under ``visualization/``.
"""
import os
from copy import deepcopy
from os import path as osp

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY, MODEL_REGISTRY

from ..registry import register
from .image_restoration_model import ImageRestorationModel

__all__ = ['SpectralModel']


@register(MODEL_REGISTRY)
class SpectralModel(ImageRestorationModel):
    """:class:`ImageRestorationModel` with validation on float spectral cubes."""

    def _save_cube(self, cube, img_name, dataset_name, current_iter):
        import scipy.io
        if self.opt['is_train']:
            save_path = osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_{current_iter}.mat')
        else:
            suffix = (self.opt.get('val') or {}).get('suffix') or self.opt['name']
            save_path = osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_{suffix}.mat')
        os.makedirs(osp.dirname(save_path), exist_ok=True)
        hwc = np.clip(cube.squeeze(0).permute(1, 2, 0).numpy(), 0, 1).astype(np.float32)
        scipy.io.savemat(save_path, {'cube': hwc})

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics_opt = deepcopy((self.opt.get('val') or {}).get('metrics') or {})
        metric_fns = {}
        for name, metric_opt in metrics_opt.items():
            metric_opt.pop('better', None)
            metric_fns[name] = (METRIC_REGISTRY.get(metric_opt.pop('type')), metric_opt)
        if metric_fns:
            self._initialize_best_metric_results(dataset_name)
        totals = {name: 0.0 for name in metric_fns}
        count = 0
        for val_data in dataloader:
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            output = self.output.detach().float().cpu()
            gt = self.gt.detach().float().cpu() if hasattr(self, 'gt') else None
            for name, (fn, metric_opt) in metric_fns.items():
                if gt is None:
                    raise ValueError(f'validation metric {name!r} needs ground truth, but {dataset_name} has none')
                totals[name] += float(fn(output, gt, **metric_opt))
            if save_img:
                self._save_cube(output, img_name, dataset_name, current_iter)
            count += 1
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if metric_fns:
            self.metric_results = {name: total / max(count, 1) for name, total in totals.items()}
            for name, value in self.metric_results.items():
                self._update_best_metric_result(dataset_name, name, value, current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)
