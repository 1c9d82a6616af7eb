"""HSIDataset on small synthetic ARAD-style data written here: HDF5 (plain and MATLAB v7.3-like
with a 512-byte header) and classic MATLAB v5 cubes, paired with RGB PNG/JPG images."""
import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from agile_ir_plugin.basicsr.data.hsi_dataset import HSIDataset, mat_cube_shape, mat_format, read_mat_cube

BANDS, H, W = 5, 20, 28


def make_cube(seed, h=H, w=W, bands=BANDS):
    return np.random.default_rng(seed).random((bands, h, w)).astype(np.float32) + 0.01  # (C, H, W)


def write_cube(path, cube, fmt, key='cube'):
    """As MATLAB writes an (H, W, C) array: v7.3/HDF5 stores it transposed, i.e. (C, W, H)."""
    if fmt == 'v5':
        scipy.io.savemat(str(path), {key: cube.transpose(1, 2, 0)})
    else:
        userblock = 512 if fmt == 'v73' else 0
        with h5py.File(path, 'w', userblock_size=userblock) as f:
            f.create_dataset(key, data=cube.transpose(0, 2, 1))


def make_rgb(seed, h=H, w=W):
    return np.random.default_rng(100 + seed).integers(10, 240, (h, w, 3), dtype=np.uint8)  # RGB order


def write_set(root, formats=('hdf5', 'v73', 'v5'), ext='.png', key='cube'):
    """Spectral cubes in root/Spec, RGB images in root/RGB, names scene0..; returns {name: (cube, rgb)}."""
    (root / 'Spec').mkdir(parents=True, exist_ok=True)
    (root / 'RGB').mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, fmt in enumerate(formats):
        cube, rgb = make_cube(i), make_rgb(i)
        write_cube(root / 'Spec' / f'scene{i}.mat', cube, fmt, key)
        cv2.imwrite(str(root / 'RGB' / f'scene{i}{ext}'), rgb[..., ::-1])  # OpenCV writes BGR
        truth[f'scene{i}'] = (cube, rgb)
    return truth


def dataset(root, phase='val', **extra):
    opt = {'name': 'hsi', 'type': 'HSIDataset', 'phase': phase, 'dataroot_gt': str(root / 'Spec'),
           'dataroot_lq': str(root / 'RGB'), 'gt_size': 8, 'stride': 4, 'scale': 1}
    opt.update(extra)
    return HSIDataset(opt)


def minmax(rgb):
    x = rgb.astype(np.float32)
    return ((x - x.min()) / (x.max() - x.min())).transpose(2, 0, 1)


@pytest.mark.parametrize('fmt', ['hdf5', 'v73', 'v5'])
def test_readers_agree_on_every_format(tmp_path, fmt):
    cube = make_cube(7)
    path = tmp_path / 'c.mat'
    write_cube(path, cube, fmt)
    assert mat_format(path) == ('v5' if fmt == 'v5' else 'hdf5')
    assert mat_cube_shape(path) == cube.shape
    np.testing.assert_array_equal(read_mat_cube(path), cube)
    window = (3, 5, 8, 11)  # top, left, height, width
    np.testing.assert_array_equal(read_mat_cube(path, window=window), cube[:, 3:11, 5:16])


def test_validation_items_are_full_images(tmp_path):
    truth = write_set(tmp_path)
    ds = dataset(tmp_path, phase='val')
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        cube, rgb = truth[f'scene{i}']
        assert item['lq'].dtype == torch.float32 and item['gt'].dtype == torch.float32
        np.testing.assert_array_equal(item['gt'].numpy(), cube)
        np.testing.assert_allclose(item['lq'].numpy(), minmax(rgb), rtol=1e-6, atol=1e-6)  # RGB order, min-max
        assert item['gt_path'].endswith(f'scene{i}.mat') and item['lq_path'].endswith(f'scene{i}.png')


def test_rgb_norm_255_and_bgr(tmp_path):
    truth = write_set(tmp_path, formats=('v5', ))
    item = dataset(tmp_path, rgb_norm='255', bgr2rgb=False)[0]
    rgb = truth['scene0'][1]
    np.testing.assert_allclose(item['lq'].numpy(), rgb[..., ::-1].transpose(2, 0, 1) / 255.0, rtol=1e-6)


@pytest.mark.parametrize('cache', [False, True])
def test_training_patches_on_the_stride_grid(tmp_path, cache):
    truth = write_set(tmp_path)
    ds = dataset(tmp_path, phase='train', use_flip=False, use_rot=False, cache_data=cache)
    rows, cols = (H - 8) // 4 + 1, (W - 8) // 4 + 1  # 4 x 6 patches per image, as MST++ counts them
    assert len(ds) == 3 * rows * cols
    for index in [0, 1, cols, rows * cols - 1, rows * cols, 2 * rows * cols + 7, len(ds) - 1]:
        img, local = divmod(index, rows * cols)
        top, left = (local // cols) * 4, (local % cols) * 4
        cube, rgb = truth[f'scene{img}']
        item = ds[index]
        np.testing.assert_array_equal(item['gt'].numpy(), cube[:, top:top + 8, left:left + 8])
        np.testing.assert_allclose(item['lq'].numpy(), minmax(rgb)[:, top:top + 8, left:left + 8], atol=1e-6)


def test_augmentation_is_a_shared_dihedral_transform(tmp_path):
    truth = write_set(tmp_path, formats=('hdf5', ))
    ds = dataset(tmp_path, phase='train')  # flips and rotations on (the defaults)
    cube, rgb = truth['scene0']
    base_gt, base_lq = cube[:, 4:12, 8:16], minmax(rgb)[:, 4:12, 8:16]  # patch index 1 * 6 + 2

    def dihedral(a):
        out = []
        for k in range(4):
            r = np.rot90(a, k, axes=(1, 2))
            out += [r, r[:, :, ::-1]]
        return out

    seen = set()
    for trial in range(40):
        item = ds[8]
        matches = [k for k, t in enumerate(dihedral(base_gt)) if np.array_equal(item['gt'].numpy(), t)]
        assert matches, 'gt patch is not a rotation/flip of the grid patch'
        k = matches[0]
        np.testing.assert_allclose(item['lq'].numpy(), dihedral(base_lq)[k], atol=1e-6)  # same transform
        seen.add(k)
    assert len(seen) >= 5  # random: several of the 8 transforms occur


def test_meta_info_file_selects_names(tmp_path):
    write_set(tmp_path, ext='.jpg')
    meta = tmp_path / 'valid_list.txt'
    meta.write_text('scene2\nscene0.mat\n\n')
    ds = dataset(tmp_path, meta_info_file=str(meta))
    assert [p[0] for p in ds.pairs] == ['scene2', 'scene0'] and len(ds) == 2
    assert ds[0]['lq_path'].endswith('scene2.jpg')


def test_errors_are_one_clear_line(tmp_path):
    write_set(tmp_path, formats=('hdf5', 'v5'))
    with pytest.raises(FileNotFoundError, match='dataroot_gt folder not found'):
        HSIDataset({'phase': 'val', 'dataroot_gt': str(tmp_path / 'nope'), 'dataroot_lq': str(tmp_path / 'RGB')})
    with pytest.raises(FileNotFoundError, match='dataroot_lq folder not found'):
        HSIDataset({'phase': 'val', 'dataroot_gt': str(tmp_path / 'Spec'), 'dataroot_lq': str(tmp_path / 'nope')})
    # a cube without its RGB image
    (tmp_path / 'RGB' / 'scene1.png').unlink()
    with pytest.raises(ValueError, match=r"1 cubes have no RGB image .* \(e.g. \['scene1'\]\)") as err:
        dataset(tmp_path)
    assert '\n' not in str(err.value)
    # an RGB image without its cube
    (tmp_path / 'Spec' / 'scene1.mat').unlink()
    cv2.imwrite(str(tmp_path / 'RGB' / 'extra.png'), make_rgb(0))
    with pytest.raises(ValueError, match=r"have no .mat cube .*\['extra'\]"):
        dataset(tmp_path)
    (tmp_path / 'RGB' / 'extra.png').unlink()
    # wrong variable name, in both formats
    for fmt in ('hdf5', 'v5'):
        write_cube(tmp_path / 'Spec' / 'scene0.mat', make_cube(0), fmt, key='rad')
        with pytest.raises(ValueError, match=r"no variable 'cube' in this .mat file \(it has \['rad'\]\); set mat_key"):
            dataset(tmp_path)
    np.testing.assert_array_equal(dataset(tmp_path, mat_key='rad')[0]['gt'].numpy(), make_cube(0))  # mat_key works
    # mismatched RGB size
    write_cube(tmp_path / 'Spec' / 'scene0.mat', make_cube(0, h=H + 4), 'hdf5')
    with pytest.raises(ValueError, match='RGB image is 20x28 but the cube is 24x28'):
        dataset(tmp_path)[0]
