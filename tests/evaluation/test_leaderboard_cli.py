"""tools/leaderboard.py end to end on tiny datasets written by the test."""
import csv
import importlib
import json

import pytest
import torch

from conftest import REPO_ROOT, dump_yaml, run_tool

from agile_ir_plugin.evaluation import evaluate


def _leaderboard_module():
    module = importlib.import_module('agile_ir_plugin.cli.leaderboard')
    return module


def test_cli_bicubic_writes_md_csv_json_and_images(sr_pairs, tmp_path):
    root = sr_pairs(2, n=2, name='Tiny')
    out = tmp_path / 'board'
    args = ['--arch', 'bicubic', '--scale', '2', '--datasets', 'Tiny', '--root', str(root.parent), '--out', str(out),
            '--save-images', '--metrics', 'psnr', 'ssim', 'psnr_rgb']
    proc = run_tool('leaderboard', args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / 'leaderboard.json').read_text())
    (row,) = data['rows']
    expected = evaluate('bicubic', ['Tiny'], scale=2, root=root.parent, metrics=('psnr', 'ssim', 'psnr_rgb'),
                        progress=False)[0]
    for key in ('model', 'dataset', 'scale', 'psnr', 'ssim', 'psnr_rgb', 'n_images'):
        assert row[key] == pytest.approx(expected[key]) if isinstance(row[key], float) else row[key] == expected[key]
    assert row['n_images'] == 2 and 'CPU' in data['meta']['device']
    with open(out / 'leaderboard.csv') as f:
        (csv_row,) = list(csv.DictReader(f))
    assert float(csv_row['psnr']) == pytest.approx(row['psnr'])
    md = (out / 'leaderboard.md').read_text()
    assert f'| bicubic | x2 | {row["psnr"]:.2f} / {row["ssim"]:.4f} |' in md
    assert sorted(p.name for p in (out / 'images' / 'bicubic' / 'Tiny' / 'X2').iterdir()) == ['img0.png', 'img1.png']


def test_cli_options_file_with_checkpoint(sr_pairs, tmp_path, capsys):
    from basicsr.archs.srvgg_arch import SRVGGNetCompact
    root = sr_pairs(2, n=2, name='Tiny')
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2)
    ckpt = tmp_path / 'net.pth'
    torch.save({'params_ema': net.state_dict()}, ckpt)
    opt = {'name': 'tinyvgg', 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 0,
           'datasets': {'test_1': {'name': 'Tiny', 'type': 'PairedImageDataset', 'dataroot_gt': str(root / 'HR'),
                                   'dataroot_lq': str(root / 'LR_bicubic' / 'X2'), 'filename_tmpl': '{}x2',
                                   'io_backend': {'type': 'disk'}}},
           'network_g': {'type': 'SRVGGNetCompact', 'num_feat': 8, 'num_conv': 2, 'upscale': 2},
           'path': {'pretrain_network_g': str(ckpt), 'param_key_g': 'params_ema', 'strict_load_g': True}}
    options = dump_yaml(opt, tmp_path / 'test.yml')
    out = tmp_path / 'board'
    assert _leaderboard_module().main(['-opt', str(options), '--out', str(out), '--no-progress', '--tile', '8',
                                       '--tile-overlap', '4']) == 0
    bicubic, row = json.loads((out / 'leaderboard.json').read_text())['rows']
    assert bicubic['model'] == 'bicubic'  # the baseline row comes first by default
    expected = evaluate(net, ['Tiny'], scale=2, root=root.parent, progress=False, tile=8, tile_overlap=4)[0]
    assert row['model'] == 'tinyvgg' and row['psnr'] == pytest.approx(expected['psnr'])
    assert row['ssim'] == pytest.approx(expected['ssim'])


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    main = _leaderboard_module().main
    assert main(['--arch', 'bicubic', '--datasets', 'Urban100', '--root', str(tmp_path), '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error:') and str(tmp_path / 'Urban100' / 'HR') in err and '\n' not in err
    legacy = tmp_path / 'legacy.pth'
    torch.save(torch.nn.Conv2d(3, 12, 3), legacy)  # a pickled module, not a state dict
    assert main(['--arch', 'SRVGGNetCompact', '--ckpt', str(legacy), '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert 'legacy pickle' in err and 'Traceback' not in err
    assert main(['--arch', 'NoSuchNet', '--out', str(tmp_path)]) == 2
    assert 'unknown arch' in capsys.readouterr().err
