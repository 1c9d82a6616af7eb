"""MST++ (+GLMHA) in MMagic (configs/mst_plusplus): the spectral dataset, MRAE loss, preprocessor and
metric of agile_ir_plugin.mmagic.spectral on a tiny ARAD-1K-style set written here (the helper of
the spectral leaderboard tests), checked against the BasicSR side they wrap: the items are
HSIDataset's (RGB min-max normalised, cubes as read), the loss is MRAE computed by hand, and the
validation / test metrics equal ``evaluate_spectral`` on the checkpoint's generator.

Like every MMagic test, the MMagic side runs in a fresh interpreter (mmagic_helpers.run_python):
one script builds both configs, trains a tiny MST++ for 4 iterations with one validation through
the entry point of ``python -m agile_ir_plugin.mmagic.train`` (``train_main``), and tests the
checkpoint through ``test_main``."""
import json

import pytest
import torch

from conftest import REPO_ROOT
from evaluation.test_leaderboard_spectral import BANDS, H, W, write_ntire_set
from mmagic_helpers import last_line, requires_mmagic, run_python
from test_mmagic_e2e import _scalars

from agile_ir_plugin.archs import MSTPlusPlus
from agile_ir_plugin.evaluation import evaluate_spectral

# one interpreter for all: 20-30 s on the 2-core machine, 12 s of it importing MMagic
pytestmark = [pytest.mark.mmagic, pytest.mark.slow, requires_mmagic]

CONFIGS = {
    'smsa': 'configs/mst_plusplus/mst-plusplus_s3c31_1xb20-lr4e-4-300k_arad1k.py',
    'glmha': 'configs/mst_plusplus/mst-plusplus-glmha_s3c31_1xb20-lr4e-4-300k_arad1k.py',
}
TINY = dict(in_channels=3, out_channels=BANDS, n_feat=BANDS, stage=1)
PATCH, STRIDE, BORDER = 16, 8, 4

# the real config, shrunk: tiny generator, the tiny set, 4 iterations, validation and checkpoint at 4
TINY_CONFIG = '''
_base_ = [{config!r}]
data_root = {data_root!r}
model = dict(generator=dict(**{generator!r}))
train_dataloader = _base_.train_dataloader
train_dataloader.update(num_workers=0, batch_size=2)
train_dataloader['dataset'].update(data_root=data_root, patch_size={patch}, stride={stride})
val_dataloader = _base_.val_dataloader
val_dataloader.update(num_workers=0)
val_dataloader['dataset']['data_root'] = data_root
val_evaluator = dict(metrics=[dict(type='agile_ir.SpectralMetrics', crop_border={border})])
test_dataloader = [val_dataloader]
test_evaluator = [dict(type='Evaluator', metrics=[dict(type='agile_ir.SpectralMetrics', crop_border={border},
                                                       prefix='ARAD_1K')])]
train_cfg = dict(max_iters=4, val_interval=4)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=4))
'''

SCRIPT = r'''
import json, os
import numpy as np, torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from agile_ir_plugin.mmagic.runner import test_main, train_main  # python -m agile_ir_plugin.mmagic.train
from mmagic.registry import DATASETS, MODELS
init_default_scope('mmagic')
torch.set_num_threads(1)
out = {}

# 1. each shipped config builds its model at the recipe's size
for name, path in CONFIGS.items():
    cfg = Config.fromfile(REPO + '/' + path)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        shape = list(model.generator(torch.rand(1, 3, 12, 20)).shape)  # MST++ pads to multiples of 8 itself
    out[name] = dict(model=type(model).__name__, preprocessor=type(model.data_preprocessor).__name__,
                     loss=type(model.pixel_loss).__module__ + '.' + type(model.pixel_loss).__name__,
                     params=sum(p.numel() for p in model.generator.parameters()), shape=shape)

# 2. the tiny config's datasets: what the model is fed
cfg = Config.fromfile(TINY_PATH)
train_set = DATASETS.build(cfg.train_dataloader.dataset)
val_set = DATASETS.build(cfg.val_dataloader.dataset)
item = train_set[5]
out['train'] = dict(n=len(train_set), inputs=list(item['inputs'].shape), gt=list(item['data_samples'].gt_img.shape),
                    dtype=str(item['inputs'].dtype), key=os.path.basename(item['data_samples'].gt_path))
try:
    DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=WORK + '_nowhere'))
except FileNotFoundError as err:
    out['missing_data'] = str(err)
sample = val_set[0]
out['val'] = dict(n=len(val_set), key=os.path.basename(sample['data_samples'].img_path),
                  inputs=sample['inputs'].tolist(), gt=sample['data_samples'].gt_img.tolist())

# 3. the loss on one preprocessed training batch is MRAE by hand; outputs are not clamped
torch.manual_seed(0)
model = MODELS.build(cfg.model)
items = [train_set[i] for i in (0, 1)]  # randomly flipped: read once
batch = model.data_preprocessor(dict(inputs=[i['inputs'] for i in items], data_samples=[i['data_samples'] for i in items]),
                                training=True)
loss = model(**batch, mode='loss')['loss'].item()
with torch.no_grad():
    pred = model.generator(batch['inputs'])
gt = batch['data_samples'].gt_img
out['loss'] = dict(mmagic=loss, by_hand=((pred - gt).abs() / gt).mean().item(),
                   inputs_equal=torch.equal(batch['inputs'][1], items[1]['inputs']),
                   gt_equal=torch.equal(gt[1], items[1]['data_samples'].gt_img))
negative = -torch.rand(1, BANDS, 8, 8)
out['destruct_keeps_negative'] = torch.equal(model.data_preprocessor.destruct(negative.clone()), negative)

# 4. train 4 iterations (validation at 4) and test the checkpoint
assert train_main([TINY_PATH, '--work-dir', WORK]) == 0
assert test_main([TINY_PATH, WORK + '/iter_4.pth', '--work-dir', WORK + '_test', '--out', WORK + '/metrics.json']) == 0
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('spectral')
    gt_dir, rgb_dir, valid_list = write_ntire_set(tmp / 'ARAD_1K')  # 3 scenes, the last 2 listed for validation
    (valid_list.parent / 'train_list.txt').write_text('ARAD_1K_0000\nARAD_1K_0001\n')
    tiny = tmp / 'tiny_mstpp.py'
    tiny.write_text(TINY_CONFIG.format(config=str(REPO_ROOT / CONFIGS['smsa']), data_root=str(tmp / 'ARAD_1K'),
                                       generator=TINY, patch=PATCH, stride=STRIDE, border=BORDER))
    work = tmp / 'work'
    script = (f'CONFIGS = {CONFIGS!r}\nREPO = {str(REPO_ROOT)!r}\nTINY_PATH = {str(tiny)!r}\n'
              f'WORK = {str(work)!r}\nBANDS = {BANDS}\n' + SCRIPT)
    proc = run_python(script, cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return dict(out=json.loads(last_line(proc)), tmp=tmp, work=work, gt_dir=gt_dir, rgb_dir=rgb_dir,
                valid_list=valid_list)


def test_configs_build_mstpp_at_recipe_size(run):
    smsa, glmha = run['out']['smsa'], run['out']['glmha']
    for info in (smsa, glmha):
        assert info['model'] == 'AgileEditModel'  # agile_ir.BaseEditModel: checkpoints load whole or an error
        assert info['preprocessor'] == 'SpectralDataPreprocessor'
        assert info['loss'] == 'agile_ir_plugin.basicsr.losses.mrae_loss.MRAELoss'  # BasicSR's own class
        assert info['shape'] == [1, 31, 12, 20]
    full = MSTPlusPlus(in_channels=3, out_channels=31, n_feat=31, stage=3)
    assert smsa['params'] == sum(p.numel() for p in full.parameters()) == 1_619_625  # 1.62 M, MST++'s README
    assert glmha['params'] < smsa['params']


def test_dataset_items_are_hsi_dataset_patches_and_images(run):
    from agile_ir_plugin.basicsr.data.hsi_dataset import read_mat_cube, read_rgb
    out = run['out']
    grid = ((H - PATCH) // STRIDE + 1) * ((W - PATCH) // STRIDE + 1)
    assert out['train']['n'] == 2 * grid  # the two scenes of train_list.txt, MST++'s patch grid
    assert out['train']['inputs'] == [3, PATCH, PATCH] and out['train']['gt'] == [BANDS, PATCH, PATCH]
    assert out['train']['dtype'] == 'torch.float32'
    val = out['val']
    assert val['n'] == 2 and val['key'] == 'ARAD_1K_0001.jpg'  # valid_list.txt: scenes 1 and 2
    rgb = read_rgb(run['rgb_dir'] / 'ARAD_1K_0001.jpg')  # min-max normalised RGB, as MST++'s -norm
    cube = read_mat_cube(run['gt_dir'] / 'ARAD_1K_0001.mat')
    assert torch.equal(torch.tensor(val['inputs']), torch.from_numpy(rgb))
    assert torch.equal(torch.tensor(val['gt']), torch.from_numpy(cube))


def test_missing_data_is_one_line_naming_the_folder(run):
    message = run['out']['missing_data']
    assert message == (f"SpectralDataset: the folder of the .mat cubes (data_root + data_prefix['gt']) does not exist: "
                       f"'{run['work']}_nowhere/Train_Spec'; set data_root in the config")


def test_loss_is_mrae_and_cubes_are_neither_normalised_nor_clamped(run):
    loss = run['out']['loss']
    assert loss['mmagic'] == pytest.approx(loss['by_hand'], rel=1e-6)
    assert loss['inputs_equal'] and loss['gt_equal']
    assert run['out']['destruct_keeps_negative']  # MMagic's DataPreprocessor.destruct clamps to [0, 255]


def test_train_validate_test_metrics_equal_evaluate_spectral(run):
    (rows,) = _scalars(run['work'])
    assert [row['iter'] for row in rows if 'loss' in row] == [1, 2, 3, 4]
    assert all(row['loss'] > 0 for row in rows if 'loss' in row)
    (val,) = [row for row in rows if 'MRAE' in row]
    assert (run['work'] / 'iter_4.pth').is_file()

    state = torch.load(run['work'] / 'iter_4.pth', map_location='cpu', weights_only=False)['state_dict']
    net = MSTPlusPlus(**TINY)
    net.load_state_dict({k[len('generator.'):]: v for k, v in state.items() if k.startswith('generator.')})
    expected = evaluate_spectral(net, str(run['gt_dir']), str(run['rgb_dir']), meta_info_file=str(run['valid_list']),
                                 crop_border=BORDER)
    assert expected['n_images'] == 2
    tested = json.loads((run['work'] / 'metrics.json').read_text())
    assert set(tested) == {'ARAD_1K/MRAE', 'ARAD_1K/RMSE', 'ARAD_1K/PSNR'}
    for key in ('mrae', 'rmse', 'psnr'):
        assert val[key.upper()] == pytest.approx(expected[key], rel=1e-5), key
        assert tested[f'ARAD_1K/{key.upper()}'] == pytest.approx(expected[key], rel=1e-5), key
