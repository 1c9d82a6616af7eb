"""End to end through MMagic's own runner (tools/train.py / tools/test.py with a .py config) on
tiny data written by the test: train 20 iterations with validation, save, resume to 40, test
from the checkpoint, and check the PSNR/SSIM MMagic reports against BasicSR's metric functions
on the same images (what `agile_ir_plugin`'s BasicSR path scores with).

Each config is the real one (its model, loss, optimiser, schedule, hooks, metrics), shrunk by a
small child config: a tiny generator, the tiny data, 20/40 iterations."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, run_tool
from mmagic_helpers import requires_mmagic

pytestmark = [pytest.mark.mmagic, requires_mmagic]

SCALE = 4
CASES = {
    # name: (config, arch, tiny generator, the recipe's lr, whether it warms up)
    'esc': ('configs/esc/esc_x4c64b5_4xb16-500k_div2k.py', 'ESC',
            dict(dim=16, pdim=8, kernel_size=5, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2), 5e-4, True),
    'agileir': ('configs/agileir/agileir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py', 'AgileIR',
                dict(img_size=16, depths=[1], embed_dim=12, num_heads=[2], window_size=4), 2e-4, False),
}

TINY_CONFIG = '''
_base_ = [{config!r}]
data_root = {data_root!r}
model = dict(generator=dict(**{generator!r}))

train_dataloader = _base_.train_dataloader
train_dataloader.update(num_workers=0, batch_size=2)
train_dataloader['dataset'].update(data_root=data_root, data_prefix=dict(img='LR_bicubic/X4', gt='HR'))
_crop = [t for t in train_dataloader['dataset']['pipeline'] if t['type'] == 'PairedRandomCrop']
_crop[0]['gt_patch_size'] = 32  # LR patch 8
val_dataloader = dict(num_workers=0, dataset=dict(data_root=data_root))
_test = _base_.test_dataloader[0]  # Set5's loader and metrics, pointed at the tiny data
_test['num_workers'] = 0
_test['dataset']['data_root'] = data_root
test_dataloader = [_test]
test_evaluator = [_base_.test_evaluator[0]]

# the recipe's schedulers, with a 5-iteration warm-up (from half the lr) instead of 20k
param_scheduler = _base_.param_scheduler
for _s in (param_scheduler if isinstance(param_scheduler, list) else [param_scheduler]):
    if _s['type'] == 'LinearLR':
        _s.update(start_factor=0.5, end=5)

train_cfg = dict(max_iters=20, val_interval=10)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=20))
'''


def _scalars(work_dir):
    """mmengine's per-iteration log (vis_data/scalars.json) of every run in work_dir, in order."""
    rows = []
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        rows.append([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return rows


def _timeline(rows):
    """Logged training iterations and validations, in order."""
    return [row['iter'] if 'loss' in row else 'val' for row in rows if 'loss' in row or 'PSNR' in row]


def _reference_metrics(tiny_config, checkpoint, data_root, arch_name):
    """Run the checkpoint's generator on the LR images and score it with BasicSR's functions."""
    import cv2
    import torch
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from mmengine.config import Config

    from agile_ir_plugin.archs import ARCHS

    generator = dict(Config.fromfile(str(tiny_config), import_custom_modules=False).model.generator)
    generator.pop('type')
    net = ARCHS[arch_name](**generator)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']  # our own file
    net.load_state_dict({k[len('generator.'):]: v for k, v in state.items() if k.startswith('generator.')})
    net.eval()
    psnr, ssim, psnr_uint8 = [], [], []
    for gt_path in sorted((data_root / 'HR').glob('*.png')):
        lq = cv2.imread(str(data_root / 'LR_bicubic' / f'X{SCALE}' / f'{gt_path.stem}x{SCALE}.png'))
        gt = cv2.imread(str(gt_path))
        lq_rgb = torch.from_numpy(lq[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255.
        with torch.no_grad():
            out = (net(lq_rgb)[0] * 255.).clamp(0, 255).permute(1, 2, 0).numpy()[..., ::-1]  # BGR
        kwargs = dict(crop_border=SCALE, input_order='HWC', test_y_channel=True)
        psnr.append(calculate_psnr(out, gt, **kwargs))
        ssim.append(calculate_ssim(out, gt, **kwargs))
        # BasicSR's own validation first rounds the output to uint8 (tensor2img)
        psnr_uint8.append(calculate_psnr(np.round(out).astype(np.uint8), gt, **kwargs))
    return float(np.mean(psnr)), float(np.mean(ssim)), float(np.mean(psnr_uint8))


def _check(proc, what):
    assert proc.returncode == 0, f'{what} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}'
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(CASES))
def test_train_resume_test_matches_basicsr_metrics(case, sr_pairs, tmp_path):
    config, arch_name, generator, lr, warm_up = CASES[case]
    data_root = sr_pairs(SCALE, n=2, size=(48, 64))
    tiny = tmp_path / f'tiny_{case}.py'
    tiny.write_text(TINY_CONFIG.format(config=str(REPO_ROOT / config), data_root=str(data_root),
                                       generator=generator))
    work_dir = tmp_path / 'work'

    # 1. train 20 iterations, validating at 10 and 20, checkpoint at 20
    log = _check(run_tool('train', [str(tiny), '--work-dir', str(work_dir)], cwd=tmp_path), 'train')
    assert (work_dir / 'iter_20.pth').is_file(), log[-3000:]
    (first,) = _scalars(work_dir)
    assert _timeline(first) == [1, 5, 10, 'val', 15, 20, 'val'], first
    lrs = {row['iter']: row['lr'] for row in first if 'loss' in row}
    assert lrs[1] == pytest.approx(lr * (0.5 if warm_up else 1.)) and lrs[10] == pytest.approx(lr), lrs
    losses = [row['loss'] for row in first if 'loss' in row]
    assert losses[-1] < losses[0], losses  # it learns

    # 2. resume from the latest checkpoint and go on to 40
    log = _check(run_tool('train', [str(tiny), '--work-dir', str(work_dir), '--resume',
                                    '--cfg-options', 'train_cfg.max_iters=40'], cwd=tmp_path), 'resume')
    assert 'resumed epoch: 0, iter: 20' in log
    assert (work_dir / 'iter_40.pth').is_file()
    _, second = _scalars(work_dir)
    assert _timeline(second) == [25, 30, 'val', 35, 40, 'val'], second

    # 3. test from the checkpoint with the config's test metrics (Set5's, on the tiny data)
    out = tmp_path / 'metrics.json'
    _check(run_tool('test', [str(tiny), str(work_dir / 'iter_40.pth'), '--work-dir', str(tmp_path / 'test'),
                             '--out', str(out)], cwd=tmp_path), 'test')
    metrics = json.loads(out.read_text())
    assert set(metrics) == {'Set5/MAE', 'Set5/PSNR', 'Set5/SSIM'}
    # the checkpoint's weights are those validated last (with EMA: the EMA weights)
    assert metrics['Set5/PSNR'] == pytest.approx(second[-1]['PSNR'], abs=1e-4)

    psnr, ssim, psnr_uint8 = _reference_metrics(tiny, work_dir / 'iter_40.pth', data_root, arch_name)
    assert abs(metrics['Set5/PSNR'] - psnr) < 0.01, (metrics, psnr)
    assert abs(metrics['Set5/PSNR'] - psnr_uint8) < 0.01, (metrics, psnr_uint8)
    assert abs(metrics['Set5/SSIM'] - ssim) < 1e-3, (metrics, ssim)
