"""README command 1 (options/train_esc_x4_demo.yml) shrunk to a few iterations, in-process.

The demo's own options file (its network, data, loss, optimizer, scheduler, logger) with only the
iteration counts and crop made small: the run must end with the closing summary (model vs bicubic
on the embedded validation images), the training-curve PNG and the bicubic | model | HR PNG, and
log to TensorBoard when tensorboard is installed (one line saying it is not, otherwise)."""
import re

import cv2
import pytest

from conftest import REPO_ROOT, dump_yaml, load_yaml

DEMO = REPO_ROOT / 'options' / 'train_esc_x4_demo.yml'


def test_demo_options_shrunk_write_summary_curve_and_comparison(tmp_path, monkeypatch):
    pytest.importorskip('skimage')
    from agile_ir_plugin.cli.train import main
    opt = load_yaml(DEMO)
    opt['train']['total_iter'] = 4
    opt['train']['warmup_iter'] = -1
    if opt['train']['scheduler']['type'] == 'CosineAnnealingRestartLR':
        opt['train']['scheduler']['periods'] = [4]
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2)
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=2, save_checkpoint_freq=4)
    monkeypatch.chdir(tmp_path)
    assert main(['-opt', str(dump_yaml(opt, tmp_path / 'demo.yml'))]) == 0
    exp = tmp_path / 'experiments' / opt['name']
    logs = list(exp.glob(f'train_{opt["name"]}_*.log'))
    assert len(logs) == 1
    text = logs[0].read_text()
    summary = text[text.index(f'Summary of {opt["name"]}'):]
    assert re.search(r'embedded_val: last \(iter 4\): psnr [0-9.]+, ssim [0-9.]+', summary), summary
    bic = re.search(r'embedded_val: bicubic: psnr ([0-9.]+), ssim ([0-9.]+); model - bicubic: psnr [+-][0-9.]+, '
                    r'ssim [+-][0-9.]+', summary)
    assert bic, summary
    # MATLAB bicubic of the two embedded validation images (chelsea, coffee), Y PSNR, border 4:
    # 31.4758 and 27.2921 dB measured with BasicSR's numpy imresize and calculate_psnr
    assert float(bic.group(1)) == pytest.approx((31.4758 + 27.2921) / 2, abs=2e-3)
    for name in ('training_curve.png', 'comparison.png'):
        assert str(exp / name) in summary
        img = cv2.imread(str(exp / name))
        assert img is not None and img.shape[0] > 50
    assert cv2.imread(str(exp / 'comparison.png')).shape == (128, 128 * 3 + 8, 3)
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
    # logger.use_tb_logger: true -- BasicSR's TensorBoard logger when tensorboard imports, else one line
    import importlib.util
    if importlib.util.find_spec('tensorboard') is None:
        assert 'tensorboard is not installed' in text
    else:
        assert list((tmp_path / 'tb_logger' / opt['name']).glob('events.out.tfevents.*'))
