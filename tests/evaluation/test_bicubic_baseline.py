"""The MATLAB-bicubic pseudo-model, and the evaluator against the bicubic table of ../shared/data.

Both bicubic tables of the shared data's README (BasicSR and MATLAB-era conventions) are checked in
test_basicsr_agreement.py.
"""
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


def test_bicubic_ssim_set5_matches_published(shared_data, one_thread):
    # Bicubic SSIM (Y, border = scale) on Set5 as published in the EDSR/RCAN tables.
    published = {2: 0.9299, 3: 0.8682, 4: 0.8104}
    rows = evaluate('bicubic', ['Set5'], scale=[2, 3, 4], root=shared_data, metrics=('psnr', 'ssim', 'psnr_rgb'),
                    progress=False)
    for row in rows:
        assert row['ssim'] == pytest.approx(published[row['scale']], abs=0.002)
        assert row['psnr_rgb'] < row['psnr']  # chroma errors make RGB PSNR lower than Y for bicubic
