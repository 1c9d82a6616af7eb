"""Registration of the archs into MMagic: lazy (never on `import agile_ir_plugin`), complete,
without shadowing MMagic's own models, and usable as the generator of MMagic's BaseEditModel."""
import json

import pytest

from mmagic_helpers import last_line, mmagic_installed, run_python

pytestmark = pytest.mark.mmagic


def test_import_agile_ir_plugin_imports_no_openmmlab(tmp_path):
    proc = run_python('''
        import sys
        import agile_ir_plugin, agile_ir_plugin.archs
        roots = {'mmagic', 'mmcv', 'mmengine', 'diffusers', 'transformers'}
        print(sorted(name for name in sys.modules if name.split('.')[0] in roots))
    ''', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert last_line(proc) == '[]'


@pytest.mark.skipif(not mmagic_installed(), reason='needs the [mmagic] extra')
def test_every_arch_registered_and_built_by_base_edit_model(tmp_path):
    proc = run_python('''
        import json
        import torch
        import agile_ir_plugin.mmagic as plugin
        from agile_ir_plugin.archs import ARCHS
        from mmagic.registry import MODELS
        from mmagic.structures import DataSample
        from mmengine.registry import init_default_scope
        init_default_scope('mmagic')  # what the Runner does for `default_scope = 'mmagic'`

        names = plugin.register_all()  # a second registration is a no-op
        out = {'names': names, 'archs': sorted(ARCHS),
               'resolved': {name: MODELS.get(key) is ARCHS[name] for name, key in names.items()},
               'scoped': {name: MODELS.get(f'agile_ir.{name}') is ARCHS[name] for name in ARCHS},
               'mmagic_restormer': MODELS.get('Restormer').__module__}

        # MMagic's BaseEditModel + DataPreprocessor + L1Loss around our generator, through the registry
        model = MODELS.build(dict(
            type='BaseEditModel',
            generator=dict(type='ESC', dim=16, pdim=8, kernel_size=5, n_blocks=1, conv_blocks=1,
                           window_size=8, num_heads=2, upscaling_factor=2),
            pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
            data_preprocessor=dict(type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.])))
        out['generator'] = type(model.generator).__name__
        torch.manual_seed(0)
        lq = torch.randint(0, 256, (3, 8, 12), dtype=torch.uint8)
        gt = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8)
        sample = DataSample(gt_img=gt)
        sample.set_metainfo(dict(img_channel_order='rgb', gt_channel_order='rgb'))
        batch = model.data_preprocessor(dict(inputs=[lq], data_samples=[sample]), training=True)
        loss = model(**batch, mode='loss')['loss']
        sr = model.generator(lq[None].float() / 255.)
        out['loss_matches'] = abs(loss.item() - (sr - gt[None].float() / 255.).abs().mean().item()) < 1e-6
        loss.backward()
        out['grads'] = all(p.grad is not None for p in model.generator.parameters() if p.requires_grad)
        print(json.dumps(out))
    ''', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(last_line(proc))
    assert sorted(out['names']) == out['archs'] and out['archs']
    assert all(out['resolved'].values()) and all(out['scoped'].values())
    # MMagic ships a Restormer of its own: it keeps the plain name, ours is reached by scope
    assert out['mmagic_restormer'].startswith('mmagic.')
    if 'Restormer' in out['names']:
        assert out['names']['Restormer'] == 'agile_ir.Restormer'
    assert out['names'].get('ESC') == 'ESC'
    assert out['generator'] == 'ESC'
    assert out['loss_matches'] and out['grads']
