"""tools/leaderboard.py in spectral mode: a tiny MST++ on a tiny NTIRE 2022-style set written here,
checked against ``evaluate_spectral`` called directly on the same model and data."""
import csv
import importlib
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, dump_yaml, load_yaml, run_tool

from agile_ir_plugin.archs import MSTPlusPlus
from agile_ir_plugin.evaluation import evaluate_spectral, write_report
from agile_ir_plugin.profiling import count_params

h5py = pytest.importorskip('h5py')

BANDS, H, W = 8, 24, 32
TINY = {'in_channels': 3, 'out_channels': BANDS, 'n_feat': BANDS, 'stage': 1}
METRICS = ('mrae', 'rmse', 'psnr')


def write_ntire_set(root, n=3, seed=0):
    """ARAD_1K layout: ``Train_Spec/ARAD_1K_000i.mat`` as MATLAB v7.3 writes an (H, W, C) array
    (HDF5 after a 512-byte header, variable ``cube`` stored transposed as (C, W, H)),
    ``Train_RGB/ARAD_1K_000i.jpg`` and ``split_txt/valid_list.txt`` naming all scenes but the first."""
    rng = np.random.default_rng(seed)
    for sub in ('Train_Spec', 'Train_RGB', 'split_txt'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = [f'ARAD_1K_{i:04d}' for i in range(n)]
    for name in names:
        cube = rng.uniform(0.05, 0.9, (BANDS, H, W)).astype(np.float32)
        with h5py.File(root / 'Train_Spec' / f'{name}.mat', 'w', userblock_size=512) as f:
            f.create_dataset('cube', data=cube.transpose(0, 2, 1))
        cv2.imwrite(str(root / 'Train_RGB' / f'{name}.jpg'), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    (root / 'split_txt' / 'valid_list.txt').write_text(''.join(f'{name}.mat\n' for name in names[1:]))
    return root / 'Train_Spec', root / 'Train_RGB', root / 'split_txt' / 'valid_list.txt'


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP spinning makes
    each of their convolutions ~100x slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ntire(tmp_path):
    return write_ntire_set(tmp_path / 'ARAD_1K')


@pytest.fixture
def tiny_mstpp(tmp_path):
    """A seeded tiny MST++ and its BasicSR checkpoint ({'params': state_dict})."""
    torch.manual_seed(0)
    model = MSTPlusPlus(**TINY).eval()
    ckpt = tmp_path / 'mstpp_tiny.pth'
    torch.save({'params': model.state_dict()}, ckpt)
    return model, ckpt


def _leaderboard_main():
    module = importlib.import_module('agile_ir_plugin.cli.leaderboard')
    return module.main


def _assert_same_row(row, expected):
    for key in ('model', 'dataset', 'scale', 'n_images'):
        assert row[key] == expected[key], key
    for key in METRICS:
        assert row[key] == pytest.approx(expected[key], rel=1e-6), key


def test_cli_rows_equal_evaluate_spectral_and_report_has_spectral_columns(ntire, tiny_mstpp, tmp_path):
    gt_dir, rgb_dir, valid_list = ntire
    model, ckpt = tiny_mstpp
    out = tmp_path / 'board'
    # no --task: --arch MSTPlusPlus selects the spectral mode
    proc = run_tool('leaderboard', ['--arch', 'MSTPlusPlus', '--arch-args', json.dumps(TINY), '--ckpt', str(ckpt),
                                    '--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir), '--meta-info', str(valid_list),
                                    '--crop-border', '3', '--device', 'cpu', '--out', str(out)], cwd=tmp_path,
                    env={'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-2000:]

    expected = evaluate_spectral(model, str(gt_dir), str(rgb_dir), meta_info_file=str(valid_list), crop_border=3,
                                 model_name='mstpp_tiny')
    assert expected['n_images'] == 2  # the list, not the folder
    data = json.loads((out / 'leaderboard.json').read_text())
    (row,) = data['rows']
    _assert_same_row(row, expected)
    assert row['dataset'] == 'NTIRE2022' and row['crop_border'] == 3 and row['device'] == 'cpu'
    assert 'ssim' not in row and 'CPU' in data['meta']['device']

    with open(out / 'leaderboard.csv') as f:
        (csv_row,) = list(csv.DictReader(f))
    for key in METRICS:
        assert float(csv_row[key]) == pytest.approx(row[key])

    md = (out / 'leaderboard.md').read_text()
    assert '| Model | Dataset | MRAE ↓ | RMSE ↓ | PSNR (dB) ↑ | Images | Crop border | Time (s) |' in md
    assert (f'| mstpp_tiny | NTIRE2022 | {expected["mrae"]:.4f} | {expected["rmse"]:.4f} | {expected["psnr"]:.2f} '
            '| 2 | 3 |') in md
    assert 'SSIM' not in md and '### Efficiency' not in md


def tiny_options(ntire, ckpt, crop_border):
    """The shipped MST++ test options with paths, network and crop border shrunk to the tiny set."""
    gt_dir, rgb_dir, valid_list = ntire
    opt = load_yaml(REPO_ROOT / 'options' / 'test_mstpp_ntire.yml')
    opt['datasets']['test_1'].update(dataroot_gt=str(gt_dir), dataroot_lq=str(rgb_dir),
                                     meta_info_file=str(valid_list))
    opt['network_g'].update(TINY)
    opt['path']['pretrain_network_g'] = str(ckpt)
    for metric in opt['val']['metrics'].values():
        metric['crop_border'] = crop_border
    return opt


def test_options_file_gives_model_datasets_and_crop_border(ntire, tiny_mstpp, tmp_path):
    gt_dir, rgb_dir, valid_list = ntire
    model, ckpt = tiny_mstpp
    opt = tiny_options(ntire, ckpt, crop_border=5)
    options = dump_yaml(opt, tmp_path / 'test_tiny.yml')
    out = tmp_path / 'board'
    assert _leaderboard_main()(['-opt', str(options), '--device', 'cpu', '--out', str(out)]) == 0

    (row,) = json.loads((out / 'leaderboard.json').read_text())['rows']
    expected = evaluate_spectral(model, str(gt_dir), str(rgb_dir), meta_info_file=str(valid_list), crop_border=5,
                                 model_name=opt['name'], dataset_name='ARAD_1K_valid')
    _assert_same_row(row, expected)
    assert row['crop_border'] == 5
    # the spectral flags replace the options file's dataset; --crop-border its metrics' border
    all_scenes = evaluate_spectral(model, str(gt_dir), str(rgb_dir), crop_border=4, model_name=opt['name'],
                                   dataset_name='all')
    assert _leaderboard_main()(['-opt', str(options), '--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir),
                                '--dataset-name', 'all', '--crop-border', '4', '--out', str(out)]) == 0
    (row,) = json.loads((out / 'leaderboard.json').read_text())['rows']
    _assert_same_row(row, all_scenes)
    assert row['n_images'] == 3 and row['crop_border'] == 4


def test_efficiency_of_a_spectral_model_at_scale_1(ntire, tiny_mstpp, tmp_path):
    gt_dir, rgb_dir, _ = ntire
    model, ckpt = tiny_mstpp
    out = tmp_path / 'board'
    assert _leaderboard_main()(['--arch', 'MSTPlusPlus', '--arch-args', json.dumps(TINY), '--ckpt', str(ckpt),
                                '--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir), '--crop-border', '2',
                                '--device', 'cpu', '--out', str(out), '--efficiency', '--latency-runs', '1']) == 0
    (row,) = json.loads((out / 'leaderboard.json').read_text())['rows']
    assert row['params'] == count_params(model) and row['macs_lr256'] > 0 and row['macs_720p'] > row['macs_lr256']
    assert row['macs_720p_input'] == '1280x720' and row['latency_input'].startswith('RGB 256x256')
    md = (out / 'leaderboard.md').read_text()
    assert '| Model | Params | MACs RGB 256² (G) | MACs RGB 1280×720 (G) |' in md
    assert f'| mstpp_tiny | {row["params"]:,} | {row["macs_lr256"] / 1e9:.2f} |' in md


def test_missing_or_empty_data_is_one_error_line_naming_the_path(ntire, tiny_mstpp, tmp_path, capsys):
    gt_dir, rgb_dir, valid_list = ntire
    _, ckpt = tiny_mstpp
    main = _leaderboard_main()
    out = tmp_path / 'board'
    base = ['--arch', 'MSTPlusPlus', '--arch-args', json.dumps(TINY), '--ckpt', str(ckpt), '--out', str(out)]

    def error_of(*extra):
        assert main(base + list(extra)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith('error:') and '\n' not in err and 'Traceback' not in err, err
        return err

    missing = tmp_path / 'no_such_spec'
    assert str(missing) in error_of('--gt-dir', str(missing), '--rgb-dir', str(rgb_dir))
    assert str(missing) in error_of('--gt-dir', str(gt_dir), '--rgb-dir', str(missing))
    assert str(missing) in error_of('--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir), '--meta-info', str(missing))
    empty_spec, empty_rgb = tmp_path / 'empty_spec', tmp_path / 'empty_rgb'
    empty_spec.mkdir()
    empty_rgb.mkdir()
    err = error_of('--gt-dir', str(empty_spec), '--rgb-dir', str(empty_rgb))
    assert str(empty_spec) in err and 'no .mat cubes' in err
    empty_list = tmp_path / 'empty_list.txt'
    empty_list.write_text('\n')
    err = error_of('--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir), '--meta-info', str(empty_list))
    assert str(empty_list) in err and 'names no image' in err
    err = error_of('--gt-dir', str(empty_spec), '--rgb-dir', str(rgb_dir))  # RGB images without cubes
    assert str(empty_spec) in err and str(rgb_dir) in err
    # NTIRE's default border of 128 on 24x32 images: caught before any inference, naming a cube
    err = error_of('--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir))
    assert 'crop border of 128' in err and str(gt_dir / 'ARAD_1K_0000.mat') in err
    assert 'rgb-dir' in error_of('--gt-dir', str(gt_dir))
    assert '--tile' in error_of('--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir), '--tile', '64')
    assert '--gt-dir' in error_of('--task', 'sr', '--gt-dir', str(gt_dir), '--rgb-dir', str(rgb_dir))
    assert not out.exists()


def _spectral_row(**values):
    row = {'model': 'MST++', 'dataset': 'NTIRE2022', 'scale': 1, 'mrae': 0.16454, 'rmse': 0.024815, 'psnr': 34.3214,
           'n_images': 50, 'seconds': 1.5, 'crop_border': 128}
    row.update(values)
    return row


def test_write_report_spectral_layout_and_no_mixing(tmp_path):
    rows = [_spectral_row(), _spectral_row(model='GLMHA', mrae=0.15, rmse=0.0231, psnr=float('inf'))]
    paths = write_report(rows, tmp_path / 'spec')
    md = paths['md'].read_text()
    assert '| MST++ | NTIRE2022 | 0.1645 | 0.0248 | 34.32 | 50 | 128 | 1.50 |' in md
    assert '| GLMHA | NTIRE2022 | 0.1500 | 0.0231 | inf |' in md
    assert 'PSNR / SSIM' not in md and 'x1' not in md
    with open(paths['csv']) as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:6] == ['model', 'dataset', 'scale', 'mrae', 'rmse', 'psnr']
        assert [float(r['mrae']) for r in reader] == [0.16454, 0.15]
    assert json.loads(paths['json'].read_text())['rows'][0] == rows[0]

    sr_row = {'model': 'ESC', 'dataset': 'Set5', 'scale': 4, 'psnr': 32.5, 'ssim': 0.9, 'n_images': 5}
    with pytest.raises(ValueError, match='cannot mix spectral rows'):
        write_report([rows[0], sr_row], tmp_path / 'mixed')
    assert not (tmp_path / 'mixed').exists()
