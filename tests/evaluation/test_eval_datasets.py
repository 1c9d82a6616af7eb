"""Dataset discovery by convention, mod-crop, grayscale and on-the-fly LR."""
import cv2
import numpy as np
import pytest

from basicsr.utils.matlab_functions import imresize

from agile_ir_plugin.evaluation import evaluate, load_pair, resolve_dataset


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def _rand(h, w, c=3, seed=0):
    shape = (h, w) if c == 1 else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_missing_dataset_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        evaluate('bicubic', ['Set5', 'Urban100'], scale=4, root=tmp_path, progress=False)
    message = str(err.value)
    assert "'Set5'" in message and str(tmp_path / 'Set5' / 'HR') in message and '\n' not in message


def test_benchmark_layout(sr_pairs):
    root = sr_pairs(3, n=2, name='Tiny')
    ds = resolve_dataset('Tiny', 3, root=root.parent)
    assert len(ds) == 2 and not ds.lr_generated
    assert [lr.name for _, lr in ds.pairs] == ['img0x3.png', 'img1x3.png']
    assert resolve_dataset(root, 3).pairs == ds.pairs  # the directory itself works too


def test_div2k_layout(tmp_path):
    _write(tmp_path / 'DIV2K_valid_HR' / '0801.png', _rand(32, 48))
    _write(tmp_path / 'DIV2K_valid_LR_bicubic' / 'X4' / '0801x4.png', _rand(8, 12))
    ds = resolve_dataset('DIV2K', 4, root=tmp_path)
    hr, lr = tmp_path / 'DIV2K_valid_HR' / '0801.png', tmp_path / 'DIV2K_valid_LR_bicubic' / 'X4' / '0801x4.png'
    assert ds.pairs == [(hr, lr)]
    assert resolve_dataset(tmp_path / 'DIV2K_valid_HR', 4).pairs == ds.pairs


def test_basicsr_gtmod12_layout(tmp_path):
    _write(tmp_path / 'datasets' / 'Set5' / 'GTmod12' / 'baby.png', _rand(24, 24))
    _write(tmp_path / 'datasets' / 'Set5' / 'LRbicx2' / 'baby.png', _rand(12, 12))
    ds = resolve_dataset('Set5', 2, root=tmp_path)
    assert ds.pairs[0][1] == tmp_path / 'datasets' / 'Set5' / 'LRbicx2' / 'baby.png'


def test_modcrop_grayscale_and_generated_lr(tmp_path):
    hr = _rand(38, 51, c=1)  # grayscale, not a multiple of 4
    _write(tmp_path / 'Gray' / 'HR' / 'g.png', hr)
    ds = resolve_dataset('Gray', 4, root=tmp_path)
    assert ds.lr_generated and 'MATLAB' in ds.lr_source
    lr, gt, gray = load_pair(*ds.pairs[0], 4, convention='matlab')
    assert gray and gt.shape == (36, 48, 3) and lr.shape == (9, 12, 3)
    lr_b, gt_b, gray_b = load_pair(*ds.pairs[0], 4)  # BasicSR's reading: same pixels, scored on Y
    assert not gray_b
    np.testing.assert_array_equal(gt_b, gt)
    np.testing.assert_array_equal(lr_b, lr)
    np.testing.assert_array_equal(gt[..., 0], hr[:36, :48])
    np.testing.assert_array_equal(gt[..., 1], gt[..., 2])
    expected = np.clip(imresize(np.repeat(hr[:36, :48, None], 3, 2).astype(np.float32) / 255, 1 / 4), 0, 1)
    np.testing.assert_allclose(lr, (expected * 255).round() / 255, atol=1e-6)
    with pytest.raises(FileNotFoundError, match='no x4 LR image'):
        resolve_dataset('Gray', 4, root=tmp_path, generate_lr=False)
    rows = evaluate('bicubic', ['Gray'], scale=4, root=tmp_path, progress=False)
    assert 'generated' in rows[0]['lr_source'] and rows[0]['n_images'] == 1


def test_lr_larger_than_hr_is_a_clear_error(tmp_path):
    _write(tmp_path / 'Bad' / 'HR' / 'a.png', _rand(16, 16))
    _write(tmp_path / 'Bad' / 'LR_bicubic' / 'X2' / 'ax2.png', _rand(16, 16))
    ds = resolve_dataset('Bad', 2, root=tmp_path)
    with pytest.raises(ValueError, match='wrong scale'):
        load_pair(*ds.pairs[0], 2)
