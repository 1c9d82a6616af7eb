"""tools/train.py end to end on CPU: exact resume, auto-resume of the newest complete checkpoint,
2-process gloo DDP.  A tiny BasicSR SwinIR (drop-path on, so the model's RNG matters) keeps each
run to a few seconds; most of the time is interpreter start-up."""
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, dump_yaml, run_tool, write_sr_pairs


def tiny_options(data_root, name, total_iter, batch=2, save_freq=1, workers=0):
    lq = str(data_root / 'LR_bicubic' / 'X4')
    gt = str(data_root / 'HR')
    return {
        'name': name, 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 7,
        'datasets': {
            'train': {'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': gt, 'dataroot_lq': lq,
                      'filename_tmpl': '{}x4', 'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': True,
                      'use_rot': True, 'num_worker_per_gpu': workers, 'batch_size_per_gpu': batch,
                      'dataset_enlarge_ratio': 4, 'prefetch_mode': None},
        },
        'network_g': {'type': 'SwinIR', 'upscale': 4, 'in_chans': 3, 'img_size': 8, 'window_size': 4,
                      'img_range': 1.0, 'depths': [2], 'embed_dim': 8, 'num_heads': [2], 'mlp_ratio': 2,
                      'upsampler': 'pixelshuffledirect', 'resi_connection': '1conv', 'drop_path_rate': 0.5},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.9, 'optim_g': {'type': 'AdamW', 'lr': 2e-3, 'weight_decay': 1e-4, 'betas': [0.9, 0.9]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [4, 8], 'gamma': 0.5},
                  'total_iter': total_iter, 'warmup_iter': 2,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': save_freq, 'use_tb_logger': False},
    }


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:  # params and params_ema
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f'{key}.{name} differs'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    # 3 images x enlarge 4 = 12 samples, batch 2 -> 6 iterations per epoch
    return write_sr_pairs(tmp_path_factory.mktemp('data'), 4, n=3, size=(64, 64))


@pytest.mark.slow
def test_resume_equals_uninterrupted_and_auto_resume_skips_incomplete(tmp_path, data_root):
    opt = dump_yaml(tiny_options(data_root, 'exact', 10), tmp_path / 'opt.yml')

    whole = tmp_path / 'whole'
    whole.mkdir()
    r = run_tool('train', ['-opt', str(opt)], cwd=whole)
    assert r.returncode == 0, r.stderr[-3000:]

    parts = tmp_path / 'parts'
    parts.mkdir()
    # first part stops mid-epoch (iter 7 = 2nd epoch, 1st batch) ...
    r = run_tool('train', ['-opt', str(opt), '--force_yml', 'train:total_iter=7'], cwd=parts)
    assert r.returncode == 0, r.stderr[-3000:]
    exp = parts / 'experiments' / 'exact'
    # ... and its last checkpoints are damaged: 7.state truncated, 6's weights gone
    state7 = exp / 'training_states' / '7.state'
    state7.write_bytes(state7.read_bytes()[:100])
    (exp / 'models' / 'net_g_6.pth').unlink()
    r = run_tool('train', ['-opt', str(opt), '--auto_resume'], cwd=parts)
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert re.search(r'skipping .*7\.state', log) and re.search(r'skipping .*6\.state', log), log[-3000:]
    assert re.search(r'using .*5\.state', log), log[-3000:]
    assert 'Resuming training from epoch: 0, iter: 5' in log

    assert_same_weights(weights(whole / 'experiments' / 'exact' / 'models' / 'net_g_10.pth'),
                        weights(exp / 'models' / 'net_g_10.pth'))
    # the untouched older checkpoints are still there and complete
    assert (exp / 'models' / 'net_g_5.pth').is_file() and (exp / 'training_states' / '5.state').is_file()


def _logged_losses(text):
    return [float(v) for v in re.findall(r'l_pix: ([0-9.e+-]+)', text)]


@pytest.mark.slow
def test_ddp_two_process_gloo_matches_single_process_batch(tmp_path, data_root):
    """2 ranks x batch 1 == 1 process x batch 2 on the same samples: DDP averages gradients, BasicSR
    reports the rank-averaged loss, and both ranks end with identical weights."""
    opt = tiny_options(data_root, 'ddp', 4, batch=1, save_freq=4)
    opt['train']['optim_g'] = {'type': 'SGD', 'lr': 0.05, 'momentum': 0.9}  # linear in the gradient
    opt['network_g']['drop_path_rate'] = 0.0  # per-rank RNG streams differ from a single process
    ddp_yml = dump_yaml(opt, tmp_path / 'ddp.yml')
    single = dict(opt, name='single')
    single['datasets'] = {'train': dict(opt['datasets']['train'], batch_size_per_gpu=2)}
    single_yml = dump_yaml(single, tmp_path / 'single.yml')

    r1 = run_tool('train', ['-opt', str(single_yml)], cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr[-3000:]
    with socket.socket() as sock:  # a free port, so parallel or repeated runs do not collide
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}',
           str(REPO_ROOT / 'tools' / 'train.py'), '-opt', str(ddp_yml), '--launcher', 'pytorch']
    r2 = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                        env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-4000:]
    out = r2.stdout + r2.stderr
    assert 'all 2 ranks hold identical weights' in out, out[-3000:]

    losses_single, losses_ddp = _logged_losses(r1.stdout + r1.stderr), _logged_losses(out)
    assert len(losses_single) == len(losses_ddp) == 4
    assert losses_ddp == pytest.approx(losses_single, rel=1e-3)  # printed with 4 decimals
    a = weights(tmp_path / 'experiments' / 'single' / 'models' / 'net_g_4.pth')['params']
    b = weights(tmp_path / 'experiments' / 'ddp' / 'models' / 'net_g_4.pth')['params']
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=1e-5), name


def test_num_gpu_auto_trains_on_cpu_and_resume_state_is_safe_to_load(tmp_path, data_root):
    opt = dump_yaml(tiny_options(data_root, 'cpu', 2, save_freq=2), tmp_path / 'opt.yml')
    r = run_tool('train', ['-opt', str(opt)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = torch.load(tmp_path / 'experiments' / 'cpu' / 'training_states' / '2.state', weights_only=True)
    assert state['iter'] == 2 and state['agile_ir']['epoch_iter'] == 2
    assert not list((tmp_path / 'experiments' / 'cpu').glob('.saving_*'))  # staging cleaned up


def test_explicit_resume_state_that_is_corrupt_is_one_clear_error(tmp_path, data_root):
    bad = tmp_path / 'bad.state'
    bad.write_bytes(b'not a checkpoint')
    opt = tiny_options(data_root, 'bad', 2)
    opt['path']['resume_state'] = str(bad)
    r = run_tool('train', ['-opt', str(dump_yaml(opt, tmp_path / 'opt.yml'))], cwd=tmp_path)
    assert r.returncode != 0
    assert 'bad.state is truncated or corrupt' in r.stderr
    assert 'Traceback' not in r.stderr
    assert bad.read_bytes() == b'not a checkpoint'


def _with_validation(opt, data_root, val_freq):
    opt['datasets']['val'] = {'name': 'tinyval', 'type': 'PairedImageDataset', 'dataroot_gt': str(data_root / 'HR'),
                              'dataroot_lq': str(data_root / 'LR_bicubic' / 'X4'), 'filename_tmpl': '{}x4',
                              'io_backend': {'type': 'disk'}}
    opt['val'] = {'val_freq': val_freq, 'save_img': False,
                  'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True},
                              'ssim': {'type': 'calculate_ssim', 'crop_border': 4, 'test_y_channel': True}}}
    return opt


def test_log_has_first_iteration_line_sane_eta_one_final_validation_and_a_summary(tmp_path, monkeypatch, data_root):
    """On 8934f24: no line before print_freq iterations, 'eta: -1 day, 23:59:..' on the last one, the
    last iteration validated twice (in the loop and after the final save), and no summary."""
    import cv2
    from basicsr.utils import get_root_logger

    from agile_ir_plugin.cli.train import main
    get_root_logger()  # as an earlier in-process user of BasicSR would: WARNING level, no file
    monkeypatch.chdir(tmp_path)
    opt = _with_validation(tiny_options(data_root, 'watch', 4, save_freq=100), data_root, val_freq=2)
    opt['logger']['print_freq'] = 100
    assert main(['-opt', str(dump_yaml(opt, tmp_path / 'opt.yml'))]) == 0
    exp = tmp_path / 'experiments' / 'watch'
    (log_file,) = exp.glob('train_watch_*.log')  # written also when an earlier test set BasicSR's logger up
    records = log_file.read_text().splitlines()
    text = '\n'.join(records)
    iter_lines = [r for r in records if re.search(r'iter:\s+\d+, lr:', r)]
    assert [int(re.search(r'iter:\s+(\d+),', r).group(1)) for r in iter_lines] == [1, 4]  # first + last
    assert re.search(r'first iteration of this run: \d+\.\d+ s', iter_lines[0])
    assert 'eta: 0:00:00,' in iter_lines[-1] and '-1 day' not in text
    assert text.count('Validation tinyval') == 2, text[-3000:]  # iter 2 and the final one, not iter 4 twice

    summary = text[text.index('Summary of watch'):]
    assert 'trained to iter 4' in summary
    last = re.search(r'tinyval: last \(iter 4\): psnr ([0-9.]+), ssim ([0-9.]+); best: psnr', summary)
    bic = re.search(r'tinyval: bicubic: psnr ([0-9.]+), ssim ([0-9.]+); model - bicubic: psnr ([+-][0-9.]+)', summary)
    assert last and bic, summary
    assert float(last.group(1)) - float(bic.group(1)) == pytest.approx(float(bic.group(3)), abs=2e-4)
    # the bicubic figure against an independent computation (BasicSR's numpy imresize on the LR files)
    from basicsr.metrics import calculate_psnr
    from basicsr.utils.matlab_functions import imresize
    psnrs = []
    for i in range(3):
        lr = cv2.imread(str(data_root / 'LR_bicubic' / 'X4' / f'img{i}x4.png')).astype(np.float64) / 255
        hr = cv2.imread(str(data_root / 'HR' / f'img{i}.png'))
        sr = (np.clip(imresize(lr, 4), 0, 1) * 255).round().astype(np.uint8)
        psnrs.append(calculate_psnr(sr, hr, crop_border=4, test_y_channel=True))
    assert float(bic.group(1)) == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert str(exp / 'models' / 'net_g_latest.pth') in summary
    for name in ('training_curve.png', 'comparison.png'):
        assert str(exp / name) in summary
        img = cv2.imread(str(exp / name))
        assert img is not None and img.size > 0
    assert cv2.imread(str(exp / 'comparison.png')).shape == (64, 64 * 3 + 8, 3)  # bicubic | model | HR, 64x64 each


def test_progress_bar_only_on_a_terminal():
    import io
    import logging

    from agile_ir_plugin.basicsr.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    class Model:
        def get_current_log(self):
            return {'l_pix': 0.5}

        def get_current_learning_rate(self):
            return [1e-3]

    opt = {'name': 'bar', 'logger': {'print_freq': 10}, 'rank': 0}
    for stream, expect_bar in ((Tty(), True), (io.StringIO(), False)):
        progress = Progress(opt, 0, 3, logging.getLogger('progress-test'), stream=stream)
        with progress:
            for it in (1, 2, 3):
                progress.data_loaded()
                progress.iteration_done(0, it, Model())
                progress.iter_start()
        assert (progress.bar is not None) == expect_bar
        assert ('3/3' in stream.getvalue()) == expect_bar, stream.getvalue()
        assert progress.eta_seconds(3) == 0.0 and [v for _, v in progress.history.losses] == [{'l_pix': 0.5}] * 3
