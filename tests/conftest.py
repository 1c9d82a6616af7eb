"""Shared fixtures: the shared real data (skips cleanly without it), tiny on-disk SR datasets,
and a smoke runner that trains an options file for a few iterations through tools/train.py."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import agile_ir_plugin  # noqa: F401  (compat fixes before any test imports basicsr)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data():
    """Path to ../shared/data (Set5/Set14/B100, T91/BSD200); skips when the checkout lacks it."""
    if not (SHARED_DATA / 'benchmark' / 'Set5' / 'HR').is_dir():
        pytest.skip(f'needs the shared real data at {SHARED_DATA} (not part of a user checkout)')
    return SHARED_DATA


def write_sr_pairs(root, scale, n=2, size=(48, 64), seed=0):
    """Write ``n`` smooth random RGB HR images (size divisible by ``scale``) to ``root/HR`` and their
    MATLAB-bicubic LR to ``root/LR_bicubic/X{scale}`` with the benchmark naming; returns root."""
    import cv2
    from basicsr.utils.matlab_functions import imresize
    root = Path(root)
    (root / 'HR').mkdir(parents=True, exist_ok=True)
    (root / 'LR_bicubic' / f'X{scale}').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size[0] // scale * scale, size[1] // scale * scale
    for i in range(n):
        low = rng.random((h // 4 + 1, w // 4 + 1, 3))
        hr = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        hr = np.clip(hr, 0, 1)
        lr = np.clip(imresize(hr, 1 / scale), 0, 1)
        cv2.imwrite(str(root / 'HR' / f'img{i}.png'), (hr * 255).round().astype(np.uint8))
        cv2.imwrite(str(root / 'LR_bicubic' / f'X{scale}' / f'img{i}x{scale}.png'), (lr * 255).round().astype(np.uint8))
    return root


@pytest.fixture
def sr_pairs(tmp_path):
    """Factory: sr_pairs(scale, n=2, size=(48, 64)) -> dataset root with HR/ and LR_bicubic/X{scale}/."""
    def make(scale, n=2, size=(48, 64), name='tiny'):
        return write_sr_pairs(tmp_path / name, scale, n=n, size=size)
    return make


def load_yaml(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


def dump_yaml(opt, path):
    import yaml
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def shrink_sr_options(opt, data_root, scale, iters=2, gt_size=None, name='smoke'):
    """Turn a full recipe (paired SR) into a CPU smoke run on ``data_root`` (from write_sr_pairs):
    same network/model/losses/optimiser/scheduler types, tiny data, ``iters`` iterations."""
    opt = dict(opt)
    opt['name'] = name
    opt['num_gpu'] = 0
    opt['manual_seed'] = 0
    train = opt['datasets']['train']
    train.update(dataroot_gt=str(Path(data_root) / 'HR'),
                 dataroot_lq=str(Path(data_root) / 'LR_bicubic' / f'X{scale}'),
                 io_backend={'type': 'disk'}, filename_tmpl='{}x%d' % scale,
                 num_worker_per_gpu=0, batch_size_per_gpu=1, dataset_enlarge_ratio=1, prefetch_mode=None)
    train.pop('meta_info_file', None)
    if gt_size is not None:
        train['gt_size'] = gt_size
    for key in list(opt['datasets']):
        if key.startswith('val') or key.startswith('test'):
            ds = opt['datasets'][key]
            ds.update(dataroot_gt=str(Path(data_root) / 'HR'),
                      dataroot_lq=str(Path(data_root) / 'LR_bicubic' / f'X{scale}'),
                      io_backend={'type': 'disk'}, filename_tmpl='{}x%d' % scale)
            ds.pop('meta_info_file', None)
    for key in list(opt.get('path', {})):
        if key.startswith('pretrain_network') or key == 'resume_state':
            opt['path'][key] = None
    opt['train']['total_iter'] = iters
    opt['train'].pop('warmup_iter', None)
    opt['logger'] = {'print_freq': 1, 'save_checkpoint_freq': iters, 'use_tb_logger': False}
    if 'val' in opt:
        opt['val']['val_freq'] = iters
    return opt


def run_tool(tool, args, cwd, env=None, timeout=600):
    """Run ``python tools/<tool>.py args`` in ``cwd``; return the CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.setdefault('OMP_NUM_THREADS', '2')
    if env:
        full_env.update(env)
    cmd = [sys.executable, str(REPO_ROOT / 'tools' / f'{tool}.py'), *args]
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def randomize(model, seed=0):
    """Non-trivial, well-scaled weights for channel-attention hosts (Restormer, MST++, GLMHA):
    temperatures / rescales in [0.5, 2.5], norm weights around 1, the rest ~ 1/sqrt(fan-in)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(('rescale', 'temperature')):
                p.copy_(torch.rand(p.shape, generator=g) * 2 + 0.5)
            elif 'norm' in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
    return model
