"""Upstream BasicSR's own `basicsr.train.train_pipeline` after `import agile_ir_plugin` trains our ESC on
CPU and resumes with --auto_resume (was: RuntimeError: Found no NVIDIA driver on your system, at
torch.cuda.current_device() in basicsr.train.load_resume_state)."""
import os
import subprocess
import sys

import torch

from conftest import REPO_ROOT, dump_yaml, write_sr_pairs

SCRIPT = '''
import sys
import agile_ir_plugin  # as our README says: before BasicSR builds anything
from basicsr.train import train_pipeline
sys.argv = ['basicsr/train.py', *sys.argv[1:]]
train_pipeline('.')
'''


def options(data_root, total_iter):
    lq, gt = str(data_root / 'LR_bicubic' / 'X2'), str(data_root / 'HR')
    return {
        'name': 'upstream_esc', 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 3,
        'datasets': {'train': {'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': gt, 'dataroot_lq': lq,
                               'filename_tmpl': '{}x2', 'io_backend': {'type': 'disk'}, 'gt_size': 32,
                               'use_hflip': True, 'use_rot': False, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 1,
                               'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
        'network_g': {'type': 'agile_ir.ESC', 'dim': 8, 'pdim': 4, 'n_blocks': 1, 'conv_blocks': 1, 'kernel_size': 3,
                      'window_size': 8, 'num_heads': 2, 'upscaling_factor': 2},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'AdamW', 'lr': 1e-3}, 'total_iter': total_iter, 'warmup_iter': -1,
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
    }


def upstream(args, cwd):
    env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO_ROOT)}
    return subprocess.run([sys.executable, '-c', SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_upstream_train_pipeline_auto_resume_on_cpu(tmp_path):
    data = write_sr_pairs(tmp_path / 'data', 2, n=2, size=(48, 48))
    first = upstream(['-opt', str(dump_yaml(options(data, 2), tmp_path / 'a.yml'))], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'upstream_esc'
    assert (exp / 'training_states' / '2.state').is_file()
    second = upstream(['-opt', str(dump_yaml(options(data, 4), tmp_path / 'b.yml')), '--auto_resume'], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    log = '\n'.join(p.read_text() for p in exp.glob('train_*.log'))
    assert 'Resuming training from epoch' in log and 'iter: 2' in log, log[-2000:]
    state = torch.load(exp / 'training_states' / '4.state', map_location='cpu', weights_only=True)
    assert state['iter'] == 4
    weights = torch.load(exp / 'models' / 'net_g_4.pth', map_location='cpu', weights_only=True)['params']
    from agile_ir_plugin.archs import ESC
    net = ESC(dim=8, pdim=4, n_blocks=1, conv_blocks=1, kernel_size=3, window_size=8, num_heads=2, upscaling_factor=2)
    assert weights.keys() == net.state_dict().keys()
