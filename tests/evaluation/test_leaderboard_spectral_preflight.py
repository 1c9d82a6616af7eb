"""tools/leaderboard.py -opt on a spectral (HSIDataset / MST++) options file runs the preflight train,
test and the SR -opt path run: every problem of the file is one ``error:`` line, before anything is
written."""
import json

import pytest
import torch

from conftest import dump_yaml
from test_leaderboard_spectral import TINY, _leaderboard_main, tiny_options, write_ntire_set

from agile_ir_plugin.archs import MSTPlusPlus

pytest.importorskip('h5py')


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_options(tmp_path):
    """The shipped MST++ test options pointed at a tiny NTIRE-style set and a tiny checkpoint."""
    torch.manual_seed(0)
    ckpt = tmp_path / 'mstpp_tiny.pth'
    torch.save({'params': MSTPlusPlus(**TINY).state_dict()}, ckpt)
    return tiny_options(write_ntire_set(tmp_path / 'ARAD_1K'), ckpt, crop_border=2)


def test_spectral_options_problems_are_one_error_line_each_before_anything_is_written(tmp_path, capsys):
    opt = _tiny_options(tmp_path)
    good = dump_yaml(opt, tmp_path / 'good.yml')
    ds = opt['datasets']['test_1']
    ds['rgb_nrom'] = ds.pop('rgb_norm')  # a typo in a key HSIDataset reads
    missing_rgb = tmp_path / 'no_such_rgb'
    ds['dataroot_lq'] = str(missing_rgb)
    missing_ckpt = tmp_path / 'no_such.pth'
    opt['path']['pretrain_network_g'] = str(missing_ckpt)
    bad = dump_yaml(opt, tmp_path / 'bad.yml')
    main = _leaderboard_main()
    out = tmp_path / 'board'

    assert main(['-opt', str(bad), '--device', 'cpu', '--out', str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert 'Traceback' not in '\n'.join(lines)
    assert len(lines) == 3 and all(line.startswith('error: ') for line in lines), lines
    assert sum("datasets.test_1.rgb_nrom" in line and "'rgb_norm'" in line for line in lines) == 1, lines
    assert sum('datasets.test_1.dataroot_lq' in line and str(missing_rgb) in line for line in lines) == 1, lines
    assert sum('path.pretrain_network_g' in line and str(missing_ckpt) in line for line in lines) == 1, lines
    assert not out.exists()

    # the same file without the problems still runs (one row, the options' border)
    assert main(['-opt', str(good), '--device', 'cpu', '--out', str(out)]) == 0
    (row,) = json.loads((out / 'leaderboard.json').read_text())['rows']
    assert row['dataset'] == 'ARAD_1K_valid' and row['n_images'] == 2 and row['crop_border'] == 2


def test_spectral_flags_replace_the_options_datasets_in_the_preflight(tmp_path, capsys):
    """--gt-dir / --rgb-dir replace the file's datasets: their (missing) folders are not checked,
    while a typo elsewhere in the file still is."""
    opt = _tiny_options(tmp_path)
    gt_dir, rgb_dir = opt['datasets']['test_1']['dataroot_gt'], opt['datasets']['test_1']['dataroot_lq']
    opt['datasets']['test_1'].update(dataroot_gt=str(tmp_path / 'gone_spec'), dataroot_lq=str(tmp_path / 'gone_rgb'))
    options = dump_yaml(opt, tmp_path / 'flags.yml')
    main = _leaderboard_main()
    out = tmp_path / 'board'
    flags = ['--gt-dir', gt_dir, '--rgb-dir', rgb_dir, '--device', 'cpu', '--out', str(out)]
    assert main(['-opt', str(options)] + flags) == 0
    assert json.loads((out / 'leaderboard.json').read_text())['rows'][0]['n_images'] == 3

    opt['val']['window_sise'] = 8
    options = dump_yaml(opt, tmp_path / 'flags_typo.yml')
    capsys.readouterr()
    assert main(['-opt', str(options)] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: val.window_sise: unknown option; did you mean 'window_size'?", err
