"""Every config under configs/ loads through mmengine, names only registered components, and
builds its model at the recipe's size (parameter counts of the papers / official code)."""
import json

import pytest

from conftest import REPO_ROOT
from mmagic_helpers import last_line, requires_mmagic, run_python

pytestmark = [pytest.mark.mmagic, requires_mmagic]

CONFIGS = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'configs').glob('*/*.py')
                 if p.parent.name != '_base_')


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    proc = run_python(f'''
        import json
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmagic.registry import (DATASETS, HOOKS, METRICS, MODELS, OPTIM_WRAPPERS, OPTIMIZERS,
                                     PARAM_SCHEDULERS, TRANSFORMS, LOOPS)
        init_default_scope('mmagic')
        out = {{}}
        for path in {CONFIGS!r}:
            cfg = Config.fromfile({str(REPO_ROOT)!r} + '/' + path)  # custom_imports: agile_ir_plugin.mmagic
            missing = []
            def need(registry, kind):
                if registry.get(kind) is None:
                    missing.append(kind)
            loaders = [cfg.train_dataloader, cfg.val_dataloader, *cfg.test_dataloader]
            for loader in loaders:
                need(DATASETS, loader.dataset.type)
                for t in loader.dataset.pipeline:
                    need(TRANSFORMS, t['type'])
            for evaluator in [cfg.val_evaluator, *cfg.test_evaluator]:
                for m in evaluator['metrics']:
                    need(METRICS, m['type'])
            for hook in [*cfg.default_hooks.values(), *cfg.custom_hooks]:
                need(HOOKS, hook['type'])
            need(OPTIMIZERS, cfg.optim_wrapper.optimizer.type)
            need(OPTIM_WRAPPERS, cfg.optim_wrapper.type)
            schedulers = cfg.param_scheduler if isinstance(cfg.param_scheduler, list) else [cfg.param_scheduler]
            for s in schedulers:
                need(PARAM_SCHEDULERS, s['type'])
            for loop in (cfg.train_cfg, cfg.val_cfg, cfg.test_cfg):
                need(LOOPS, loop['type'])
            model = MODELS.build(cfg.model)
            gen = model.generator
            out[path] = dict(missing=missing, generator=type(gen).__module__ + '.' + type(gen).__name__,
                             params=sum(p.numel() for p in gen.parameters()), lr=cfg.optim_wrapper.optimizer.lr,
                             max_iters=cfg.train_cfg.max_iters, scope=cfg.default_scope,
                             imports=cfg.custom_imports['imports'])
        print(json.dumps(out))
    ''', cwd=tmp_path_factory.mktemp('configs'), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(last_line(proc))


def test_all_configs_present():
    assert set(CONFIGS) >= {'configs/esc/esc_x4_div2k.py', 'configs/agileir/agileir_x4_div2k.py',
                            'configs/swinir/swinir_light_x4_div2k.py', 'configs/restormer/restormer_derain.py',
                            'configs/restormer/restormer_glmha_derain.py'}


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_with_registered_components(built, path):
    info = built[path]
    assert info['missing'] == []
    assert info['scope'] == 'mmagic' and info['imports'] == ['agile_ir_plugin.mmagic']


def test_models_at_recipe_size(built):
    esc = built['configs/esc/esc_x4_div2k.py']
    assert esc['generator'] == 'agile_ir_plugin.archs.esc_arch.ESC'
    assert esc['params'] == 967_500  # official ESC x4 (DIV2K), counted on the official code
    assert (esc['lr'], esc['max_iters']) == (5e-4, 500_000)

    swinir = built['configs/swinir/swinir_light_x4_div2k.py']
    assert swinir['generator'].startswith('mmagic.') and swinir['generator'].endswith('.SwinIRNet')
    assert swinir['params'] == 929_628  # SwinIR-light x4
    agileir = built['configs/agileir/agileir_x4_div2k.py']
    assert agileir['generator'] == 'agile_ir_plugin.archs.agileir_arch.AgileIR'
    assert agileir['params'] <= swinir['params']
    assert (agileir['lr'], agileir['max_iters']) == (swinir['lr'], swinir['max_iters']) == (2e-4, 500_000)

    restormer = built['configs/restormer/restormer_derain.py']
    glmha = built['configs/restormer/restormer_glmha_derain.py']
    assert restormer['generator'] == glmha['generator'] == 'agile_ir_plugin.archs.restormer_arch.Restormer'
    assert restormer['params'] == 26_126_644  # official Restormer
    assert glmha['params'] < restormer['params']
    assert (restormer['lr'], restormer['max_iters']) == (3e-4, 300_000)
