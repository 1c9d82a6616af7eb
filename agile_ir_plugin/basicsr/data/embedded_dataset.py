"""EmbeddedSRDataset: real photographs that scikit-image (a BasicSR dependency) ships, made into
HR/LR pairs with BasicSR's MATLAB-compatible bicubic ``imresize`` -- the default data of the
README's main job, so a fresh machine trains without downloading anything.

Splits (disjoint): ``train`` = astronaut, rocket, motorcycle_left, hubble_deep_field, ihc;
``val`` = chelsea, coffee.  HR is mod-cropped to the scale; LR is rounded to 8 bits as a saved
PNG would be.  Training samples are random ``gt_size`` crops with flips/rotations
(BasicSR's ``paired_random_crop`` and ``augment``, on copies: the cached pair is read-only),
validation samples are whole images.
Outputs follow BasicSR's paired datasets: ``{'lq', 'gt', 'lq_path', 'gt_path'}``, RGB in [0, 1].
"""
import os

import numpy as np
from torch.utils import data as data

from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import DATASET_REGISTRY

from ..registry import register

SPLITS = {
    'train': ('astronaut.png', 'rocket.jpg', 'motorcycle_left.png', 'hubble_deep_field.jpg', 'ihc.png'),
    'val': ('chelsea.png', 'coffee.png'),
}
_CACHE = {}


def _skimage_data_dir():
    import skimage
    return os.path.join(os.path.dirname(skimage.__file__), 'data')


def load_pair(filename, scale):
    """(HR, LR) float32 RGB arrays in [0, 1] for one shipped image; cached per process."""
    key = (filename, scale)
    if key not in _CACHE:
        from skimage import io
        path = os.path.join(_skimage_data_dir(), filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'EmbeddedSRDataset: {path} is missing; scikit-image ships it '
                                    '(reinstall scikit-image).')
        hr = io.imread(path)
        hr = np.repeat(hr[..., None], 3, axis=2) if hr.ndim == 2 else hr[..., :3]  # gray photos as RGB
        h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
        hr = hr[:h, :w].astype(np.float32) / 255.0
        lr = np.clip(imresize(hr, 1 / scale), 0, 1)
        lr = np.ascontiguousarray((lr * 255.0).round().astype(np.float32) / 255.0)
        for img in (hr, lr):
            img.setflags(write=False)  # shared by every sample: an in-place write must fail, not corrupt
        _CACHE[key] = (hr, lr)
    return _CACHE[key]


@register(DATASET_REGISTRY)
class EmbeddedSRDataset(data.Dataset):
    """Options: ``split`` (train|val), ``scale``, and for training ``gt_size``, ``use_hflip``,
    ``use_rot`` -- the keys of BasicSR's ``PairedImageDataset``."""

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        split = opt.get('split', 'train' if opt.get('phase') == 'train' else 'val')
        if split not in SPLITS:
            raise ValueError(f"EmbeddedSRDataset: split must be one of {sorted(SPLITS)}, got {split!r}")
        self.split, self.scale = split, int(opt['scale'])
        self.names = list(SPLITS[split])

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        name = self.names[index]
        img_gt, img_lq = load_pair(name, self.scale)
        if self.opt.get('phase') == 'train':
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt['gt_size'], self.scale, name)
            # copies: BasicSR's augment flips in place (cv2.flip(img, 1, img)) and these crops are views
            # of the cached pair (flipped in place, the cache became a patchwork whose LR no longer
            # matches its HR at the patch edges, and training learned from broken pairs)
            img_gt, img_lq = img_gt.copy(), img_lq.copy()
            img_gt, img_lq = augment([img_gt, img_lq], self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        img_gt, img_lq = img2tensor([np.array(img_gt), np.array(img_lq)],  # contiguous, writable
                                    bgr2rgb=False, float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': name, 'gt_path': name}
