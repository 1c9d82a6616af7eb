"""MMagic's own entry points with our models: MMagicInferencer's module (was: AttributeError: module
'mediapipe' has no attribute 'solutions', via controlnet_aux), `mmagic::` base configs (was:
No module named 'pkg_resources' with setuptools >= 81; the mmagic extra pins setuptools<81), and
the module entry point that mirrors MMagic's tools/train.py."""
import json

import pytest

from mmagic_helpers import REPO_ROOT, last_line, requires_mmagic, run_python

pytestmark = [requires_mmagic, pytest.mark.mmagic]


def test_mmagic_inferencer_runs_our_esc(tmp_path):
    r = run_python(f'''
        import json, cv2, numpy as np, torch
        import agile_ir_plugin.mmagic  # fixes + registration first
        from mmagic.apis import MMagicInferencer  # the import that failed
        from mmagic.apis.inferencers import Inferencers
        from mmengine.config import Config
        from agile_ir_plugin.archs import ESC
        small = dict(dim=16, pdim=8, n_blocks=1, conv_blocks=1, window_size=8, kernel_size=5, num_heads=2)
        cfg = Config.fromfile('{REPO_ROOT}/configs/esc/esc_x4c64b5_4xb16-500k_div2k.py')
        cfg.model.generator.update(small)
        cfg.dump('esc.py')
        torch.manual_seed(0)
        net = ESC(upscaling_factor=4, **small).eval()
        torch.save({{'params': net.state_dict()}}, 'esc.pth')
        img = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
        cv2.imwrite('lr.png', img)
        inferencer = Inferencers(task='Image super-resolution', config='esc.py', ckpt='esc.pth', device='cpu')
        result = inferencer(img='lr.png', result_out_dir='sr.png')
        sr = cv2.imread('sr.png')
        with torch.no_grad():
            ref = net(torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255.)
        ref = (ref[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
        print(json.dumps({{'shape': list(sr.shape), 'max_diff': float(np.abs(sr.astype(float) - ref).max())}}))
    ''', cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(last_line(r))
    assert out['shape'] == [48, 40, 3]
    assert out['max_diff'] <= 1.0


def test_mmagic_base_config_resolves(tmp_path):
    (tmp_path / 'cfg.py').write_text("_base_ = 'mmagic::_base_/default_runtime.py'\nexperiment_name = 'x'\n")
    r = run_python('''
        import agile_ir_plugin.mmagic
        from mmengine.config import Config
        cfg = Config.fromfile('cfg.py')
        print(cfg.default_scope)
    ''', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert last_line(r) == 'mmagic'


def test_module_entry_point_mirrors_mmagic_train(tmp_path):
    r = run_python('''
        import sys
        sys.argv = ['train', '--local-rank=0', 'missing.py', '--work-dir', 'w']
        import runpy
        try:
            runpy.run_module('agile_ir_plugin.mmagic.train', run_name='__main__')
        except SystemExit as err:  # the preflight's one line (was mmengine's FileNotFoundError)
            print('config not found:', str(err.code).startswith('error: missing.py: no such config file'))
    ''', cwd=tmp_path)
    assert last_line(r) == 'config not found: True', r.stderr[-2000:]
