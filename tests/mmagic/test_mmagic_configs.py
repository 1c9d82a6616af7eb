"""Every config under configs/ loads through mmengine, names only registered components, builds
its model at the recipe's size (parameter counts of the papers / official code), upscales by the
scale its name says, and follows the BasicSR options it mirrors (options/train_*.yml, read here);
every metafile.yml names existing configs, and every config is in one."""
import json
import re

import pytest
import yaml

from conftest import REPO_ROOT
from mmagic_helpers import last_line, requires_mmagic, run_python

pytestmark = [pytest.mark.mmagic, requires_mmagic]

CONFIGS = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'configs').glob('*/*.py')
                 if p.parent.name != '_base_')
# MMagic's naming: <algo>_<model settings>_<gpus>x<batch per gpu>-<schedule>_<dataset>.py
NAME = re.compile(r'^(?P<algo>[a-z][a-z0-9-]*)_(?P<model>[a-z0-9-]+)_(?P<gpus>\d+)x[b](?P<batch>\d+)-'
                  r'(?:lr(?P<lr>[0-9e.-]+)-)?(?P<iters>\d+)k_(?P<data>[a-z0-9-]+)\.py$')

# config -> the BasicSR options it mirrors
OPTIONS = {
    'configs/esc/esc_x2c64b5_4xb16-500k_div2k.py': 'train_esc_x2.yml',
    'configs/esc/esc_x3c64b5_4xb16-500k_div2k.py': 'train_esc_x3.yml',
    'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py': 'train_esc_x4.yml',
    'configs/esc/esc-light_x4c64b3_4xb16-500k_div2k.py': 'train_esc_light_x4.yml',
    'configs/esc/escfp_x4c48b5_4xb16-500k_div2k.py': 'train_escfp_x4.yml',
    'configs/agileir/agileir_x2s64w8d4e60_4xb16-lr2e-4-500k_div2k.py': 'train_agileir_x2.yml',
    'configs/agileir/agileir_x3s64w8d4e60_4xb16-lr2e-4-500k_div2k.py': 'train_agileir_x3.yml',
    'configs/agileir/agileir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py': 'train_agileir_x4.yml',
    'configs/swinir/swinir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py': 'train_swinir_light_x4.yml',
    'configs/restormer/restormer_c48_8xb8-lr3e-4-300k_rain13k.py': 'train_restormer_derain.yml',
    'configs/restormer/restormer-glmha_c48_8xb8-lr3e-4-300k_rain13k.py': 'train_restormer_glmha_derain.yml',
    'configs/restormer/restormer_c48_8xb8-lr3e-4-300k_gopro.py': 'train_restormer_deblur.yml',
    'configs/restormer/restormer-glmha_c48_8xb8-lr3e-4-300k_gopro.py': 'train_restormer_glmha_deblur.yml',
    'configs/mst_plusplus/mst-plusplus_s3c31_1xb20-lr4e-4-300k_arad1k.py': 'train_mstpp_ntire.yml',
    'configs/mst_plusplus/mst-plusplus-glmha_s3c31_1xb20-lr4e-4-300k_arad1k.py': 'train_mstpp_glmha_ntire.yml',
}
GLOBAL_BATCH = {'mst-plusplus': 20, 'mst-plusplus-glmha': 20}  # MST++'s recipe: 20 on one GPU; the rest: 64
NOT_MODEL_ARGS = {'type', 'attn_backend'}  # the registry name; our backend choice (default 'auto')


def options(config):
    return yaml.safe_load((REPO_ROOT / 'options' / OPTIONS[config]).read_text())


def name_scale(config):
    match = re.search(r'_x(\d)', config.rsplit('/', 1)[-1])
    return int(match.group(1)) if match else 1


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    proc = run_python(f'''
        import json
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmagic.registry import (DATASETS, HOOKS, METRICS, MODELS, OPTIM_WRAPPERS, OPTIMIZERS,
                                     PARAM_SCHEDULERS, TRANSFORMS, LOOPS)
        init_default_scope('mmagic')
        torch.manual_seed(0)
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
            evaluators = [cfg.val_evaluator, *cfg.test_evaluator]
            for evaluator in evaluators:
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
            model = MODELS.build(cfg.model).eval()
            gen = model.generator
            with torch.no_grad():  # the scale the network really has: an 8 x 16 input
                shape = list(gen(torch.rand(1, 3, 8, 16)).shape)
            train = {{t['type']: t for t in cfg.train_dataloader.dataset.pipeline}}
            spectral = 'PairedRandomCrop' not in train  # MST++: patches cut by the dataset, scale 1
            out[path] = dict(
                missing=missing, model=type(model).__name__, generator=type(gen).__module__ + '.' + type(gen).__name__,
                generator_cfg=cfg.model.generator.to_dict(), out_shape=shape,
                params=sum(p.numel() for p in gen.parameters()), optimizer=cfg.optim_wrapper.optimizer.to_dict(),
                clip_grad=cfg.optim_wrapper.get('clip_grad', None),
                max_iters=cfg.train_cfg.max_iters, scope=cfg.default_scope, imports=cfg.custom_imports['imports'],
                scale=cfg.get('scale', 1), set_scale=1 if spectral else train['SetValues']['dictionary']['scale'],
                gt_patch_size=(cfg.train_dataloader.dataset.patch_size if spectral
                               else train['PairedRandomCrop']['gt_patch_size']),
                batch=cfg.train_dataloader.batch_size, pixel_loss=cfg.model.pixel_loss.type,
                lr_prefixes=[l.dataset.data_prefix['img'] for l in loaders],
                metrics=[m for e in evaluators for m in e['metrics'] if m['type'] in ('PSNR', 'SSIM')],
                schedulers=[s.to_dict() for s in schedulers],
                ema=[h['momentum'] for h in cfg.custom_hooks if h['type'] == 'EMAHook'],
                experiment_name=cfg.experiment_name)
        print(json.dumps(out))
    ''', cwd=tmp_path_factory.mktemp('configs'), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(last_line(proc))


def test_every_family_and_scale_has_a_config():
    assert set(CONFIGS) == set(OPTIONS)  # a new config says which options it mirrors


@pytest.mark.parametrize('path', CONFIGS)
def test_config_named_in_mmagic_convention(path):
    match = NAME.match(path.rsplit('/', 1)[-1])
    assert match, path
    opt = options(path)
    train = opt['datasets']['train']
    gpus = int(match['gpus'])
    assert int(match['batch']) == train['batch_size_per_gpu']
    assert gpus * int(match['batch']) == GLOBAL_BATCH.get(match['algo'], 64)  # the recipes' global batch
    assert int(match['iters']) * 1000 == opt['train']['total_iter']
    if match['lr']:
        assert float(match['lr']) == float(opt['train']['optim_g']['lr'])
    assert name_scale(path) == opt['scale']


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_with_registered_components(built, path):
    info = built[path]
    assert info['missing'] == []
    assert info['scope'] == 'mmagic' and info['imports'] == ['agile_ir_plugin.mmagic']
    assert info['experiment_name'] == path.rsplit('/', 1)[-1][:-3]
    assert info['model'] == 'AgileEditModel'  # agile_ir.BaseEditModel: checkpoint loads whole or an error


@pytest.mark.parametrize('path', CONFIGS)
def test_scale_matches_name(built, path):
    info, scale = built[path], name_scale(path)
    assert info['out_shape'] == [1, info['generator_cfg'].get('out_channels', 3), 8 * scale, 16 * scale]
    assert info['scale'] == info['set_scale'] == scale
    if scale > 1:  # bicubic LR folders and the border cropped before scoring, as BasicSR
        assert all(prefix.endswith(f'X{scale}') for prefix in info['lr_prefixes'])
        assert {m['crop_border'] for m in info['metrics']} == {scale}


@pytest.mark.parametrize('path', CONFIGS)
def test_config_follows_its_options(built, path):
    info, opt = built[path], options(path)
    network = {k: v for k, v in opt['network_g'].items() if k not in NOT_MODEL_ARGS}
    generator = {k: v for k, v in info['generator_cfg'].items() if k not in NOT_MODEL_ARGS}
    assert generator == network
    assert info['generator'].rsplit('.', 1)[-1] in (opt['network_g']['type'], 'SwinIRNet')

    train, data = opt['train'], opt['datasets']['train']
    optim = train['optim_g']
    assert info['optimizer']['type'] == optim['type']
    assert info['optimizer']['lr'] == float(optim['lr'])
    assert list(info['optimizer']['betas']) == optim['betas']
    assert info['optimizer']['weight_decay'] == float(optim.get('weight_decay', 0))
    assert info['max_iters'] == train['total_iter']
    assert info['pixel_loss'].rsplit('.', 1)[-1] == train['pixel_opt']['type']
    assert info['batch'] == data.get('mini_batch_sizes', [data['batch_size_per_gpu']])[0]
    assert info['gt_patch_size'] == data.get('gt_sizes', [data['gt_size']])[0]  # progressive: first stage
    assert info['ema'] == ([pytest.approx(1 - train['ema_decay'])] if train.get('ema_decay') else [])
    assert info['clip_grad'] == ({'max_norm': train['grad_clip_norm']} if train.get('use_grad_clip') else None)

    sched = train['scheduler']
    steps = [s for s in info['schedulers'] if s['type'] == 'MultiStepLR']
    if sched['type'] == 'MultiStepLR':
        assert [(s['milestones'], s['gamma']) for s in steps] == [(sched['milestones'], sched['gamma'])]
        warm = [s for s in info['schedulers'] if s['type'] == 'LinearLR']
        assert [s['end'] for s in warm] == ([train['warmup_iter']] if train.get('warmup_iter', -1) > 0 else [])
    elif sched['type'] == 'CosineAnnealingRestartLR':  # one cycle from 0: torch's CosineAnnealingLR
        (cosine,) = info['schedulers']
        assert sched['periods'] == [train['total_iter']] and sched['restart_weights'] == [1]
        assert (cosine['type'], cosine['T_max'], cosine['eta_min'], cosine['begin']) == (
            'CosineAnnealingLR', sched['periods'][0], float(sched['eta_min']), 0)
    else:  # CosineAnnealingRestartCyclicLR [92k, 208k] with eta_mins [lr, 1e-6]: constant, then cosine
        constant, cosine = info['schedulers']
        assert constant['type'] == 'ConstantLR' and constant['end'] == sched['periods'][0]
        assert sched['eta_mins'][0] == float(optim['lr'])
        assert (cosine['type'], cosine['T_max'], cosine['eta_min']) == (
            'CosineAnnealingLR', sched['periods'][1], sched['eta_mins'][1])


def test_models_at_recipe_size(built):
    esc = built['configs/esc/esc_x4c64b5_4xb16-500k_div2k.py']
    assert esc['generator'] == 'agile_ir_plugin.archs.esc_arch.ESC'
    assert esc['params'] == 967_500  # official ESC x4 (DIV2K), counted on the official code
    fp = built['configs/esc/escfp_x4c48b5_4xb16-500k_div2k.py']
    assert fp['generator'] == 'agile_ir_plugin.archs.esc_arch.ESCFP'
    # #Params (K) of the ESC paper's Table 2
    paper_k = {'esc_x2c64b5': 947, 'esc_x3c64b5': 955, 'esc_x4c64b5': 968, 'esc-light_x4c64b3': 624,
               'escfp_x4c48b5': 539}
    for name, k in paper_k.items():
        assert round(built[f'configs/esc/{name}_4xb16-500k_div2k.py']['params'] / 1000) == k, name

    swinir = built['configs/swinir/swinir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py']
    assert swinir['generator'].startswith('mmagic.') and swinir['generator'].endswith('.SwinIRNet')
    assert swinir['params'] == 929_628  # SwinIR-light x4
    agileir = built['configs/agileir/agileir_x4s64w8d4e60_4xb16-lr2e-4-500k_div2k.py']
    assert agileir['generator'] == 'agile_ir_plugin.archs.agileir_arch.AgileIR'
    assert agileir['params'] <= swinir['params']

    for task in ('rain13k', 'gopro'):
        restormer = built[f'configs/restormer/restormer_c48_8xb8-lr3e-4-300k_{task}.py']
        glmha = built[f'configs/restormer/restormer-glmha_c48_8xb8-lr3e-4-300k_{task}.py']
        assert restormer['generator'] == glmha['generator'] == 'agile_ir_plugin.archs.restormer_arch.Restormer'
        assert restormer['params'] == 26_126_644  # official Restormer
        assert glmha['params'] < restormer['params']


def test_metafiles_name_every_config(built):
    listed = set()
    for meta in sorted((REPO_ROOT / 'configs').glob('*/metafile.yml')):
        data = yaml.safe_load(meta.read_text())
        collections = {c['Name'] for c in data['Collections']}
        for c in data['Collections']:
            assert (REPO_ROOT / c['README']).is_file(), c['README']
        for model in data['Models']:
            config = model['Config']
            assert (REPO_ROOT / config).is_file(), f'{meta}: {config} does not exist'
            assert model['Name'] == config.rsplit('/', 1)[-1][:-3]
            assert model['In Collection'] in collections
            assert model['Metadata']['Parameters'] == built[config]['params'], config
            assert model['Metadata'].get('Scale', 1) == name_scale(config)
            assert all(set(r) == {'Dataset', 'Metrics', 'Task'} and r['Metrics'] for r in model['Results'])
            assert 'Weights' in model
            listed.add(config)
    assert listed == set(CONFIGS)


def test_sr_data_bases_read_the_benchmark_layout(shared_data, tmp_path):
    """Each scale's data base finds Set5/Set14/B100 pairs in the layout of ../shared/data, and the LR
    it loads is the HR's size / scale (the X<s> folder and the <name>x<s> file name of that scale)."""
    configs = {s: f'configs/esc/esc_x{s}c64b5_4xb16-500k_div2k.py' for s in (2, 3, 4)}
    proc = run_python(f'''
        import json
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmagic.registry import DATASETS
        init_default_scope('mmagic')
        out = {{}}
        for scale, path in {configs!r}.items():
            cfg = Config.fromfile({str(REPO_ROOT)!r} + '/' + path)
            for loader in cfg.test_dataloader[:3]:  # Set5, Set14, B100 (Urban100/Manga109 are not shared)
                ds = loader.dataset
                ds.data_root = ds.data_root.replace('datasets/', {str(shared_data)!r} + '/', 1)
                dataset = DATASETS.build(ds)
                sample = dataset[0]
                lr, gt = sample['inputs'], sample['data_samples'].gt_img.data
                out[f'{{scale}} {{ds.metainfo.dataset_type}}'] = [len(dataset), list(lr.shape), list(gt.shape)]
        print(json.dumps(out))
    ''', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(last_line(proc))
    for scale in (2, 3, 4):
        for name, count in (('set5', 5), ('set14', 14), ('b100', 100)):
            n, lr, gt = found[f'{scale} {name}']
            assert n == count
            assert lr[0] == gt[0] == 3 and [scale * lr[1], scale * lr[2]] == gt[1:], (scale, name, lr, gt)
