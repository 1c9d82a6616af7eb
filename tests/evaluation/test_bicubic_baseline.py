"""The MATLAB-bicubic pseudo-model, and the evaluator against the bicubic table of ../shared/data.

The README of the shared data gives the bicubic PSNR (Y, border = scale) of Set5/Set14/B100 at
x2/x3/x4, measured independently and matching the published EDSR/RCAN baselines; a correct
evaluator reproduces it within 0.02 dB.  The table is parsed from that README, not copied here.
"""
import re

import numpy as np
import pytest
import torch

from basicsr.utils.matlab_functions import imresize

from agile_ir_plugin.evaluation import MatlabBicubic, evaluate, generate_lr


@pytest.mark.parametrize('scale', [2, 3, 4, 1 / 2, 1 / 3, 1 / 4])
def test_matlab_bicubic_matches_basicsr_imresize(scale):
    x = torch.rand(3, 23, 31, generator=torch.Generator().manual_seed(0))
    ours = MatlabBicubic(scale)(x[None])[0]
    ref = imresize(x, scale)  # BasicSR's loop implementation of MATLAB imresize
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_generate_lr_is_rounded_basicsr_imresize():
    hr = np.random.default_rng(0).random((24, 36, 3)).astype(np.float32)
    lr = generate_lr(hr, 4)
    assert lr.shape == (6, 9, 3)
    np.testing.assert_array_equal(lr * 255, np.clip(imresize(hr, 1 / 4), 0, 1).__mul__(255).round())


@pytest.fixture
def one_thread():
    """The bicubic model is a few small matmuls per image: one thread is as fast on an idle CPU and
    avoids OpenMP spin-waiting on a busy one (this test goes from ~25 s to ~6 s of CPU time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _readme_table(shared_data):
    """{(set, scale): psnr} from the 'Sanity figures' table of shared/data/README.md."""
    text = (shared_data / 'README.md').read_text()
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if cells and cells[0] in ('Set5', 'Set14', 'B100') and all(re.fullmatch(r'\d+\.\d+', c) for c in cells[1:4]):
            for scale, value in zip((2, 3, 4), cells[1:4]):
                table[cells[0], scale] = float(value)
    assert len(table) == 9, 'README bicubic table not found'
    return table


def test_bicubic_reproduces_shared_data_table(shared_data, one_thread):
    expected = _readme_table(shared_data)
    rows = evaluate('bicubic', ['Set5', 'Set14', 'B100'], scale=[2, 3, 4], root=shared_data, metrics=('psnr',),
                    progress=False)
    assert len(rows) == 9
    for row in rows:
        assert row['lr_source'].startswith('files'), row  # the MATLAB-made LR, not regenerated
        assert row['n_images'] == {'Set5': 5, 'Set14': 14, 'B100': 100}[row['dataset']]
        assert row['psnr'] == pytest.approx(expected[row['dataset'], row['scale']], abs=0.02), row
        assert row['ssim'] is None  # not requested


def test_bicubic_ssim_set5_matches_published(shared_data, one_thread):
    # Bicubic SSIM (Y, border = scale) on Set5 as published in the EDSR/RCAN tables.
    published = {2: 0.9299, 3: 0.8682, 4: 0.8104}
    rows = evaluate('bicubic', ['Set5'], scale=[2, 3, 4], root=shared_data, metrics=('psnr', 'ssim', 'psnr_rgb'),
                    progress=False)
    for row in rows:
        assert row['ssim'] == pytest.approx(published[row['scale']], abs=0.002)
        assert row['psnr_rgb'] < row['psnr']  # chroma errors make RGB PSNR lower than Y for bicubic
