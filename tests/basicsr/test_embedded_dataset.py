"""EmbeddedSRDataset: training samples must not change the cached images, and stay bicubic pairs.

BasicSR's ``augment`` flips in place (``cv2.flip(img, 1, img)``).  On 8934f24 the random crops
were views of the cached pair, so every flipped sample flipped a region of the cache: after a few
hundred samples the images were a patchwork whose LR no longer matched the HR across the flipped
regions' edges, and the demo trained on broken pairs (it ended below bicubic)."""
import numpy as np
import pytest

pytest.importorskip('skimage')


def test_training_samples_leave_the_cached_pairs_unchanged():
    import random

    from agile_ir_plugin.basicsr.data import embedded_dataset as ed
    ds = ed.EmbeddedSRDataset({'split': 'train', 'scale': 4, 'phase': 'train', 'gt_size': 64,
                               'use_hflip': True, 'use_rot': True})
    before = {name: [a.copy() for a in ed.load_pair(name, 4)] for name in ds.names}
    random.seed(0)
    for i in range(200):
        ds[i % len(ds)]
    for name, (hr, lr) in before.items():
        now_hr, now_lr = ed.load_pair(name, 4)
        assert np.array_equal(now_hr, hr) and np.array_equal(now_lr, lr), name


def test_a_training_sample_is_a_matlab_bicubic_pair():
    import random

    from basicsr.utils.matlab_functions import imresize

    from agile_ir_plugin.basicsr.data import embedded_dataset as ed
    ds = ed.EmbeddedSRDataset({'split': 'train', 'scale': 4, 'phase': 'train', 'gt_size': 96,
                               'use_hflip': True, 'use_rot': True})
    random.seed(1)
    for i in range(300):  # samples before the checked ones: flips must not have broken the pairs
        ds[i % len(ds)]
    for i in range(10):
        sample = ds[i % len(ds)]
        gt = sample['gt'].numpy().transpose(1, 2, 0).astype(np.float64)
        lq = sample['lq'].numpy().transpose(1, 2, 0).astype(np.float64)
        assert gt.shape == (96, 96, 3) and lq.shape == (24, 24, 3)
        # away from the crop's edge (the bicubic kernel reaches 8 HR pixels, 2 LR) the LR is the HR's bicubic
        down = np.clip(imresize(gt, 1 / 4), 0, 1)
        assert np.abs(down - lq)[3:-3, 3:-3].max() <= 1 / 255 + 1e-6, i
