"""Spectral reconstruction (RGB -> 31-band cube, MST++ / NTIRE 2022) in MMagic: thin adapters.

MMagic 1.2.0 has no hyperspectral dataset, loss or metric, and its ``DataPreprocessor`` assumes
8-bit images: its ``destruct`` clamps every output to [0, 255] (an MRAE of a clamped cube is not
the cube's MRAE).  The four pieces here wrap what the BasicSR side already has, nothing is
re-implemented:

* ``SpectralDataset`` (DATASETS): BasicSR's :class:`~agile_ir_plugin.basicsr.data.hsi_dataset.HSIDataset`
  (ARAD-1K layout: ``.mat`` cubes + RGB ``.jpg``; MST++'s per-image min-max RGB normalisation;
  ``patch_size``: patches on MST++'s stride grid, else whole images) as an mmengine dataset.  Its
  items are MMagic's: ``img`` (H, W, 3) and ``gt`` (H, W, C) float32 arrays, which MMagic's own
  ``Flip`` / ``RandomTransposeHW`` (MST++'s 8 rotations/flips) and ``PackInputs`` take as they are
  (``PackInputs`` turns any (H, W, C) array into a (C, H, W) tensor: no transform is added).
* ``MRAELoss`` (MODELS): BasicSR's :class:`~agile_ir_plugin.basicsr.losses.mrae_loss.MRAELoss`,
  the class itself (``pixel_loss(pred, gt)`` is the call both frameworks make).
* ``SpectralDataPreprocessor`` (MODELS): MMagic's ``DataPreprocessor`` without normalisation and
  whose ``destruct`` only removes padding: the cubes reach the loss and the metric as read.
* ``SpectralMetrics`` (METRICS): MRAE / RMSE / PSNR per image with
  :func:`agile_ir_plugin.evaluation.spectral.spectral_scores` (what ``evaluate_spectral`` and the
  leaderboard use), averaged over the images; ``crop_border`` 128 as NTIRE 2022 validation.
"""
import os

import numpy as np
import torch
from mmagic.evaluation.metrics.base_sample_wise_metric import BaseSampleWiseMetric
from mmagic.models.data_preprocessors import DataPreprocessor
from mmengine.dataset import BaseDataset

from ..basicsr.data.hsi_dataset import HSIDataset
from ..basicsr.losses.mrae_loss import MRAELoss
from ..evaluation.spectral import spectral_scores

__all__ = ['SpectralDataset', 'SpectralDataPreprocessor', 'SpectralMetrics', 'MRAELoss', 'COMPONENTS']


class SpectralDataset(BaseDataset):
    """RGB -> hyperspectral pairs of the ARAD-1K layout, items as MMagic's image loaders give them.

    Args:
        data_root (str): e.g. ``datasets/ARAD_1K``.
        data_prefix (dict): ``gt``: folder of the ``.mat`` cubes, ``img``: folder of the RGB images
            (relative to ``data_root``). Default: MST++'s ``Train_Spec`` / ``Train_RGB``.
        ann_file (str): optional list of scene names, one a line (``split_txt/valid_list.txt``);
            without it every cube is used.
        patch_size (int, optional): training: items are ``patch_size`` crops on a ``stride`` grid of
            every image (MST++: 128 / 8); None: whole images (validation, testing).
        mat_key (str): the variable of the cube in the ``.mat`` files. Default: ``cube``.
        rgb_norm (str): ``minmax`` (each image by its own range, MST++) or ``255``.
        bgr2rgb (bool): RGB channel order for the network. Default: True.
        cache_data (bool): keep every cube in memory (MST++ does; ~28 GB for ARAD-1K).
        **kwargs: mmengine ``BaseDataset`` arguments (``pipeline``, ``metainfo``, ``test_mode`` ...).
    """

    def __init__(self, data_root='', data_prefix=dict(img='Train_RGB', gt='Train_Spec'), ann_file='',
                 patch_size=None, stride=8, mat_key='cube', rgb_norm='minmax', bgr2rgb=True, cache_data=False,
                 **kwargs):
        self.hsi_options = dict(phase='train' if patch_size else 'val', gt_size=patch_size, stride=stride,
                                mat_key=mat_key, rgb_norm=rgb_norm, bgr2rgb=bgr2rgb, cache_data=cache_data,
                                use_flip=False, use_rot=False)  # augmentation: the config's pipeline
        self.hsi = None
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=dict(data_prefix), **kwargs)

    def load_data_list(self):
        if set(self.data_prefix) != {'img', 'gt'}:
            raise ValueError(f'SpectralDataset: data_prefix needs the keys img (RGB images) and gt (.mat cubes), '
                             f'got {sorted(self.data_prefix)}')
        for key, role in (('gt', '.mat cubes'), ('img', 'RGB images')):
            if not os.path.isdir(self.data_prefix[key]):
                raise FileNotFoundError(f"SpectralDataset: the folder of the {role} (data_root + data_prefix['{key}']) "
                                        f'does not exist: {self.data_prefix[key]!r}; set data_root in the config')
        if self.ann_file and not os.path.isfile(self.ann_file):
            raise FileNotFoundError(f'SpectralDataset: ann_file (the list of scenes, data_root + ann_file) does not '
                                    f'exist: {self.ann_file!r}')
        options = dict(self.hsi_options, dataroot_gt=self.data_prefix['gt'], dataroot_lq=self.data_prefix['img'],
                       meta_info_file=self.ann_file or None)
        try:
            self.hsi = HSIDataset(options)
        except (OSError, ValueError) as err:  # its wording names BasicSR's options: say which are meant
            raise type(err)(f'{err} [SpectralDataset: dataroot_gt = data_root/data_prefix.gt, dataroot_lq = '
                            f'data_root/data_prefix.img, meta_info_file = ann_file, gt_size = patch_size]') from None
        return [dict(key=name, img_path=rgb_path, gt_path=cube_path) for name, cube_path, rgb_path in self.hsi.pairs]

    def __len__(self):
        self.full_init()
        return len(self.hsi)  # patches on the grid (training) or images

    def get_data_info(self, idx):
        item = self.hsi[idx]
        hwc = {k: np.ascontiguousarray(item[k].numpy().transpose(1, 2, 0)) for k in ('lq', 'gt')}
        return dict(img=hwc['lq'], gt=hwc['gt'], img_path=item['lq_path'], gt_path=item['gt_path'], sample_idx=idx)


class SpectralDataPreprocessor(DataPreprocessor):
    """MMagic's ``DataPreprocessor`` for float cubes: batches and pads like it, leaves the values as
    read, and gives outputs back unclamped (MMagic's own ``destruct`` clamps to [0, 255]).

    The identity normalisation (mean 0, std 1, exact in floating point) is set rather than none:
    MMagic 1.2.0 normalises the ground truth of a training batch whatever ``mean=None`` says
    (``AttributeError: ... has no attribute 'mean'``)."""

    def __init__(self, mean=0., std=1., **kwargs):
        super().__init__(mean=mean, std=std, **kwargs)

    def destruct(self, outputs, data_samples=None, key='img'):
        return self._destruct_padding(outputs * self.std.view(-1, 1, 1) + self.mean.view(-1, 1, 1), data_samples)


class SpectralMetrics(BaseSampleWiseMetric):
    """MRAE, RMSE and PSNR (lower, lower, higher is better) of each predicted cube, averaged over
    the images: ``evaluate_spectral``'s numbers on the same predictions.

    Args:
        crop_border (int): pixels removed from every side first (NTIRE 2022 validation: 128).
        data_range (float): PSNR's peak (cubes clamped to [0, data_range] for PSNR only).
        gt_key, pred_key, collect_device, prefix: as MMagic's metrics.
    """
    metric = 'MRAE'
    names = {'mrae': 'MRAE', 'rmse': 'RMSE', 'psnr': 'PSNR'}

    def __init__(self, crop_border=128, data_range=1.0, gt_key='gt_img', pred_key='pred_img', collect_device='cpu',
                 prefix=None):
        super().__init__(gt_key=gt_key, pred_key=pred_key, collect_device=collect_device, prefix=prefix)
        self.crop_border = crop_border
        self.data_range = data_range

    def process(self, data_batch, data_samples):
        for data in data_samples:
            pred, gt = data['output'][self.pred_key], data[self.gt_key]
            pred = pred.detach().float().cpu() if torch.is_tensor(pred) else torch.as_tensor(pred)
            gt = gt.detach().float().cpu() if torch.is_tensor(gt) else torch.as_tensor(gt)
            self.results.append(spectral_scores(pred, gt, self.crop_border, self.data_range))

    def compute_metrics(self, results):
        return {name: float(np.mean([r[key] for r in results])) for key, name in self.names.items()}


# (registry kind, name, class) registered by agile_ir_plugin.mmagic.registration.register_all
COMPONENTS = [
    ('dataset', 'SpectralDataset', SpectralDataset),
    ('model', 'MRAELoss', MRAELoss),
    ('model', 'SpectralDataPreprocessor', SpectralDataPreprocessor),
    ('metric', 'SpectralMetrics', SpectralMetrics),
]
