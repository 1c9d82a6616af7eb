"""Every Restormer / MST++ options file of issue 5 (host and GLMHA) trains for a few iterations
through tools/train.py on tiny synthetic data, and its test options evaluate the result through
tools/test.py -- same model, dataset, loss, optimiser, scheduler and metric types as the recipes,
tiny networks and data.  Training runs in a subprocess (``run_tool``); tools/test.py runs in this
process (``runpy``) to spare a second interpreter start per options file."""
import io
import logging
import runpy
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from conftest import REPO_ROOT, dump_yaml, load_yaml, run_tool

OPTIONS = REPO_ROOT / 'options'
RESTORMER = [('derain', 'train_restormer_derain.yml', 'test_restormer_derain.yml'),
             ('glmha_derain', 'train_restormer_glmha_derain.yml', 'test_restormer_glmha_derain.yml'),
             ('deblur', 'train_restormer_deblur.yml', 'test_restormer_deblur.yml'),
             ('glmha_deblur', 'train_restormer_glmha_deblur.yml', 'test_restormer_glmha_deblur.yml')]
ONE_THREAD = {'OMP_NUM_THREADS': '1'}  # tiny networks: a second thread only adds overhead on a shared CPU
MSTPP = [('mstpp', 'train_mstpp_ntire.yml', 'test_mstpp_ntire.yml'),
         ('mstpp_glmha', 'train_mstpp_glmha_ntire.yml', 'test_mstpp_glmha_ntire.yml')]


# ------------------------------------------------------------------------------ tiny data
def write_paired(root, n, size, seed):
    """Degraded/clean RGB pairs (input/, target/) with the same names, as Rain13K and GoPro."""
    rng = np.random.default_rng(seed)
    for sub in ('input', 'target'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clean = cv2.resize(rng.random((size[0] // 4, size[1] // 4, 3)), (size[1], size[0]))
        degraded = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1)
        cv2.imwrite(str(root / 'target' / f'im{i}.png'), (clean * 255).round().astype(np.uint8))
        cv2.imwrite(str(root / 'input' / f'im{i}.png'), (degraded * 255).round().astype(np.uint8))
    return root


def write_arad(root, n=3, size=(24, 32), bands=31, seed=0):
    """ARAD_1K layout: Train_Spec/*.mat (HDF5 and classic v5 mixed), Train_RGB/*.jpg, split_txt/."""
    rng = np.random.default_rng(seed)
    for sub in ('Train_Spec', 'Train_RGB', 'split_txt'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = [f'ARAD_1K_{i:04d}' for i in range(1, n + 1)]
    for i, name in enumerate(names):
        cube = rng.uniform(0.05, 1.0, (size[0], size[1], bands)).astype(np.float32)  # MATLAB (H, W, C)
        if i % 2:
            scipy.io.savemat(str(root / 'Train_Spec' / f'{name}.mat'), {'cube': cube})
        else:
            with h5py.File(root / 'Train_Spec' / f'{name}.mat', 'w', userblock_size=512) as f:
                f['cube'] = cube.transpose(2, 1, 0)  # v7.3 stores MATLAB arrays transposed
        cv2.imwrite(str(root / 'Train_RGB' / f'{name}.jpg'), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    (root / 'split_txt' / 'train_list.txt').write_text('\n'.join(names[:-1]) + '\n')
    (root / 'split_txt' / 'valid_list.txt').write_text(names[-1] + '\n')
    return root


# ------------------------------------------------------------------------------ option shrinking
def _tiny_logger(opt, iters):
    opt['logger'] = {'print_freq': 1, 'save_checkpoint_freq': iters, 'use_tb_logger': False,
                     'wandb': {'project': None, 'resume_id': None}}


def shrink_restormer(opt, data, name, iters=2):
    opt.update(name=name, num_gpu=0, manual_seed=0)
    train = opt['datasets']['train']
    train.update(dataroot_gt=str(data / 'train' / 'target'), dataroot_lq=str(data / 'train' / 'input'),
                 num_worker_per_gpu=0, batch_size_per_gpu=2, gt_size=32,
                 mini_batch_sizes=[2, 1], iters=[1, 1], gt_sizes=[16, 32])
    opt['datasets']['val'].update(dataroot_gt=str(data / 'val' / 'target'), dataroot_lq=str(data / 'val' / 'input'))
    opt['network_g'].update(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    opt['train']['total_iter'] = iters
    opt['val']['val_freq'] = iters
    _tiny_logger(opt, iters)
    return opt


def shrink_mstpp(opt, data, name, iters=2):
    opt.update(name=name, num_gpu=0, manual_seed=0)
    for key, ds in opt['datasets'].items():
        ds.update(dataroot_gt=str(data / 'Train_Spec'), dataroot_lq=str(data / 'Train_RGB'),
                  meta_info_file=str(data / 'split_txt' / Path(ds['meta_info_file']).name))
    opt['datasets']['train'].update(gt_size=16, stride=8, num_worker_per_gpu=0, batch_size_per_gpu=2)
    opt['network_g'].update(stage=1)
    for metric in opt['val']['metrics'].values():
        metric['crop_border'] = 4  # 128 in the recipe, for 482x512 images
    opt['train']['total_iter'] = iters
    opt['val']['val_freq'] = iters
    _tiny_logger(opt, iters)
    return opt


def shrink_test(opt, name, weights, datasets):
    opt.update(name=name, num_gpu=0)
    for key in list(opt['datasets']):
        opt['datasets'][key].update(datasets)
    opt['path']['pretrain_network_g'] = str(weights)
    return opt


def run_test_tool_in_process(opt_path, cwd, monkeypatch):
    """``python tools/test.py -opt opt_path`` in ``cwd``, in this process; returns what it logged."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, 'argv', [str(REPO_ROOT / 'tools' / 'test.py'), '-opt', str(opt_path)])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger('basicsr')
    level = logger.level  # BasicSR sets INFO only when the first get_root_logger call has a log file
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO_ROOT / 'tools' / 'test.py'), run_name='__main__')
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert exit_info.value.code == 0
    return stream.getvalue()


def train_then_test(tmp_path, monkeypatch, train_file, test_file, shrink, data, test_datasets, tiny_net):
    name = Path(train_file).stem
    opt = shrink(load_yaml(OPTIONS / train_file), data, name)
    run = run_tool('train', ['-opt', str(dump_yaml(opt, tmp_path / train_file))], cwd=tmp_path, env=ONE_THREAD)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    exp = tmp_path / 'experiments' / name
    log = ''.join(p.read_text() for p in (exp).glob('train_*.log'))
    weights = exp / 'models' / 'net_g_latest.pth'
    state = torch.load(exp / 'training_states' / '2.state', map_location='cpu', weights_only=True)
    params = torch.load(weights, map_location='cpu', weights_only=True)['params']
    assert state['iter'] == 2 and params

    test_opt = load_yaml(OPTIONS / test_file)
    test_opt['network_g'].update(tiny_net)
    test_opt = shrink_test(test_opt, 'test_' + name, weights, test_datasets)
    for metric in test_opt['val']['metrics'].values():
        if 'crop_border' in metric and metric['crop_border'] > 4:
            metric['crop_border'] = 4
    test_log = run_test_tool_in_process(dump_yaml(test_opt, tmp_path / test_file), tmp_path, monkeypatch)
    return log, test_log, tmp_path / 'results' / ('test_' + name)


@pytest.mark.slow
@pytest.mark.parametrize('task, train_file, test_file', RESTORMER, ids=[r[0] for r in RESTORMER])
def test_restormer_options_train_and_test(tmp_path, monkeypatch, task, train_file, test_file):
    data = tmp_path / 'data'
    write_paired(data / 'train', n=2, size=(32, 32), seed=0)
    write_paired(data / 'val', n=1, size=(20, 28), seed=1)  # not a multiple of 8: padded, cropped back
    expected_attn = 'glmha' if 'glmha' in train_file else 'mdta'
    assert load_yaml(OPTIONS / train_file)['network_g']['attn'] == expected_attn
    log, test_log, results = train_then_test(
        tmp_path, monkeypatch, train_file, test_file, shrink_restormer, data,
        {'dataroot_gt': str(data / 'val' / 'target'), 'dataroot_lq': str(data / 'val' / 'input')},
        {'dim': 8, 'num_blocks': [1, 1, 1, 1], 'num_refinement_blocks': 1})
    assert 'Progressive patches: stage 0 from iter 1: patch 16, batch 2 per process' in log
    assert 'Progressive patches: stage 1 from iter 2: patch 32, batch 1 per process' in log
    assert '# psnr:' in log
    assert '# psnr:' in test_log and '# ssim:' in test_log
    outputs = sorted((results / 'visualization').rglob('*.png'))
    assert outputs and all(cv2.imread(str(p)).shape == (20, 28, 3) for p in outputs)


@pytest.mark.slow
@pytest.mark.parametrize('task, train_file, test_file', MSTPP, ids=[r[0] for r in MSTPP])
def test_mstpp_options_train_and_test(tmp_path, monkeypatch, task, train_file, test_file):
    data = write_arad(tmp_path / 'ARAD_1K')
    expected_attn = 'glmha' if 'glmha' in train_file else 'smsa'
    assert load_yaml(OPTIONS / train_file)['network_g']['attn'] == expected_attn
    test_data = {'dataroot_gt': str(data / 'Train_Spec'), 'dataroot_lq': str(data / 'Train_RGB'),
                 'meta_info_file': str(data / 'split_txt' / 'valid_list.txt')}
    log, test_log, results = train_then_test(tmp_path, monkeypatch, train_file, test_file, shrink_mstpp, data,
                                             test_data, {'stage': 1})
    assert 'Number of train images: 12' in log  # 2 training scenes x (2 x 3) patches of 16 px, stride 8
    assert 'l_pix' in log
    for metric in ('mrae', 'rmse', 'psnr'):
        assert f'# {metric}:' in log and f'# {metric}:' in test_log
    saved = list((results / 'visualization').rglob('*.mat'))
    assert len(saved) == 1 and scipy.io.loadmat(str(saved[0]))['cube'].shape == (24, 32, 31)
