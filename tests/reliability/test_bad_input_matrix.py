"""The bad-input matrix: each bad input through ``tools/train.py``, ``tools/test.py`` or
``tools/leaderboard.py`` (their ``main`` in-process) ends with the exit code, exactly one
``error: ...`` line per problem, no traceback, and every file and folder that existed before
byte-identical after (no experiment archived, no result folder created).

One tiny dataset, checkpoints and an existing experiment are written once for the module; every
case runs in that folder, so a case that wrongly writes anything fails its own snapshot check."""
import importlib
import os
import pickle
import types

import pytest
import torch
import yaml

from conftest import write_sr_pairs

ESC_SMALL = {'type': 'ESC', 'dim': 8, 'pdim': 4, 'kernel_size': 3, 'n_blocks': 1, 'conv_blocks': 1, 'window_size': 4,
             'num_heads': 2, 'upscaling_factor': 4}


def _esc_state(scale, seed=0):
    from agile_ir_plugin.archs import ESC
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in ESC_SMALL.items() if k != 'type'}
    return ESC(**{**kwargs, 'upscaling_factor': scale}).state_dict()


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp('matrix')
    write_sr_pairs(root / 'data', 4, n=2, size=(32, 32))
    odd = write_sr_pairs(root / 'odd', 4, n=1, size=(32, 32))
    import cv2
    import numpy as np
    cv2.imwrite(str(odd / 'HR' / 'img0.png'), np.zeros((35, 35, 3), np.uint8))  # 35 // 4 = 8 = its LR size
    torch.save({'params': _esc_state(4)}, root / 'esc_x4.pth')
    torch.save({'params': _esc_state(2), 'params_ema': _esc_state(2, 1)}, root / 'esc_x2.pth')
    torch.save({'params_ema': _esc_state(4)}, root / 'esc_x4_ema_only.pth')
    torch.save({'state_dict': {'generator.' + k: v for k, v in _esc_state(4).items()}, 'meta': {}},
               root / 'esc_x4_mmagic.pth')
    torch.save({'params': _esc_state(4)}, root / 'cut.pth')
    (root / 'cut.pth').write_bytes((root / 'cut.pth').read_bytes()[:300])
    with open(root / 'raw.pkl', 'wb') as f:
        pickle.dump({'params': {'w': np.ones(2)}}, f)
    exp = root / 'experiments' / 'm' / 'models'
    exp.mkdir(parents=True)
    (exp / 'net_g_5.pth').write_bytes(b'an earlier run')
    (root / 'results' / 'm').mkdir(parents=True)
    (root / 'results' / 'm' / 'kept.txt').write_text('an earlier test')
    (root / 'a_file').write_text('not a folder')
    return root


def train_opt(root):
    data = root / 'data'
    return {
        'name': 'm', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': {'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': str(data / 'HR'),
                               'dataroot_lq': str(data / 'LR_bicubic' / 'X4'), 'filename_tmpl': '{}x4',
                               'io_backend': {'type': 'disk'}, 'gt_size': 16, 'use_hflip': True, 'use_rot': True,
                               'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 1,
                               'prefetch_mode': None}},
        'network_g': dict(ESC_SMALL),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.9, 'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [5], 'gamma': 0.5}, 'total_iter': 2,
                  'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'val': {'val_freq': 2, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
    }


def eval_opt(root, ckpt='esc_x4.pth'):
    data = root / 'data'
    return {
        'name': 'm', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'test_1': {'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': str(data / 'HR'),
                                'dataroot_lq': str(data / 'LR_bicubic' / 'X4'), 'filename_tmpl': '{}x4',
                                'io_backend': {'type': 'disk'}}},
        'network_g': dict(ESC_SMALL),
        'path': {'pretrain_network_g': str(root / ckpt), 'param_key_g': 'params', 'strict_load_g': True},
        'val': {'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4}}},
    }


def _set(opt, dotted, value):
    *parents, last = dotted.split('.')
    node = opt
    for key in parents:
        node = node[key]
    if value is DEL:
        del node[last]
    else:
        node[last] = value


DEL = object()


def edits(*pairs):
    def apply(opt, root):
        for dotted, value in pairs:
            _set(opt, dotted, value(root) if callable(value) else value)
        return opt
    return apply


def at(name):
    return lambda root: str(root / name)


# (tool, edits, expected fragments (one list per error line)); tools: train / test / leaderboard
CASES = {
    # --- train: values --------------------------------------------------------------------
    'negative_lr': ('train', edits(('train.optim_g.lr', -1e-4)), [['train.optim_g: AdamW refuses', 'Invalid learning rate']]),
    'batch_size_0': ('train', edits(('datasets.train.batch_size_per_gpu', 0)),
                     [['datasets.train.batch_size_per_gpu: expected an integer >= 1, got 0']]),
    'missing_total_iter': ('train', edits(('train.total_iter', DEL)), [['train.total_iter: required, missing']]),
    'lr_as_string': ('train', edits(('train.optim_g.lr', '5e-4')), [["train.optim_g.lr: expected a number, got the string '5e-4'"]]),
    'bad_betas': ('train', edits(('train.optim_g.betas', [1.5, 0.9])), [['AdamW refuses', 'beta']]),
    'unknown_optimizer': ('train', edits(('train.optim_g.type', 'AdamWW')), [["train.optim_g.type: no optimizer in torch.optim named 'AdamWW'; did you mean 'AdamW'?"]]),
    'unknown_scheduler': ('train', edits(('train.scheduler.type', 'MultiStepLRR')), [["train.scheduler.type: no scheduler named 'MultiStepLRR'; did you mean"]]),
    'cosine_periods_short': ('train', edits(('train.scheduler', {'type': 'CosineAnnealingRestartLR', 'periods': [1], 'restart_weights': [1]})),
                             [['train.scheduler.periods: they cover 1 iterations, train.total_iter is 2']]),
    'amp_fp8': ('train', edits(('train.amp', 'fp8')), [["train.amp: expected one of fp32, bf16, fp16 (or no key), got 'fp8'"]]),
    'ema_decay_1.5': ('train', edits(('train.ema_decay', 1.5)), [['train.ema_decay: expected a number in [0, 1), got 1.5']]),
    'workers_negative': ('train', edits(('datasets.train.num_worker_per_gpu', -1)), [['datasets.train.num_worker_per_gpu: expected an integer >= 0']]),
    'print_freq_0': ('train', edits(('logger.print_freq', 0)), [['logger.print_freq: expected an integer >= 1, got 0']]),
    'val_freq_missing': ('train', edits(('val.val_freq', DEL)), [['val.val_freq: required, missing']]),
    # --- train: keys ----------------------------------------------------------------------
    'typo_use_hflp': ('train', edits(('datasets.train.use_hflp', True)), [["datasets.train.use_hflp: unknown option; did you mean 'use_hflip'?"]]),
    'typo_total_iters': ('train', edits(('train.total_iters', 5)), [["train.total_iters: unknown option; did you mean 'total_iter'?"]]),
    'typo_print_frq': ('train', edits(('logger.print_frq', 5)), [["logger.print_frq: unknown option; did you mean 'print_freq'?"]]),
    'typo_weight_decy': ('train', edits(('train.optim_g.weight_decy', 0)), [["train.optim_g.weight_decy: AdamW has no option 'weight_decy'; did you mean 'weight_decay'?"]]),
    'typo_arch_option': ('train', edits(('network_g.num_head', 2)), [["network_g.num_head: ESC has no option 'num_head'; did you mean 'num_heads'?"]]),
    'typo_metric_option': ('train', edits(('val.metrics.psnr.crop_bordr', 4)), [["val.metrics.psnr.crop_bordr: calculate_psnr has no option 'crop_bordr'; did you mean 'crop_border'?"]]),
    'typo_dist_params': ('train', edits(('dist_params', {'backnd': 'gloo'})), [["dist_params.backnd: unknown option; did you mean 'backend'?"]]),
    'typo_pretrain_key': ('train', edits(('path.pretrain_network_gg', None)), [["path.pretrain_network_gg: unknown option; did you mean"]]),
    'unknown_arch': ('train', edits(('network_g.type', 'ESCC')), [["network_g.type: no arch named 'ESCC'; did you mean"]]),
    'unknown_loss': ('train', edits(('train.pixel_opt.type', 'L1Los')), [["train.pixel_opt.type: no loss named 'L1Los'; did you mean 'L1Loss'?"]]),
    'missing_model_type': ('train', edits(('model_type', DEL)), [['model_type: required, missing']]),
    'missing_train_dataset': ('train', edits(('datasets', {})), [["datasets.train: required, missing"]]),
    # --- train: data ----------------------------------------------------------------------
    'missing_dataroot': ('train', edits(('datasets.train.dataroot_gt', at('nowhere'))), [['datasets.train.dataroot_gt: expected an existing folder', "nowhere' (not found)"]]),
    'dataroot_is_a_file': ('train', edits(('datasets.train.dataroot_lq', at('a_file'))), [['datasets.train.dataroot_lq: expected a folder of images', '(a file)']]),
    'odd_size_hr': ('train', edits(('datasets.train.dataroot_gt', at('odd/HR')), ('datasets.train.dataroot_lq', at('odd/LR_bicubic/X4'))),
                    [['is 35x35, not a multiple of the scale 4', '(8x8 x 4 = 32x32)', 'crop the HR to 32x32']]),
    'wrong_template': ('train', edits(('datasets.train.filename_tmpl', '{}_x4')), [['no LR image for HR', "filename_tmpl '{}_x4'"]]),
    # --- train: checkpoints -----------------------------------------------------------------
    'x2_checkpoint_in_x4': ('train', edits(('path.pretrain_network_g', at('esc_x2.pth'))),
                            [["esc_x2.pth' [params] is a x2 checkpoint, the options say x4 (network_g.upscaling_factor)", 'train.resize_pretrain_g: true']]),
    'absent_param_key': ('train', edits(('path.pretrain_network_g', at('esc_x4.pth')), ('path.param_key_g', 'params_ema')),
                         [["has no 'params_ema' weights that BasicSR can load (it holds params)"]]),
    'ema_only_checkpoint': ('train', edits(('path.pretrain_network_g', at('esc_x4_ema_only.pth'))),
                            [["has no 'params' weights that BasicSR can load (it holds params_ema)"]]),
    'mmagic_checkpoint': ('train', edits(('path.pretrain_network_g', at('esc_x4_mmagic.pth'))),
                          [["convert it to BasicSR's layout first", 'convert_checkpoint']]),
    'truncated_checkpoint': ('train', edits(('path.pretrain_network_g', at('cut.pth'))), [['cut.pth is truncated or corrupt']]),
    'raw_pickle_checkpoint': ('train', edits(('path.pretrain_network_g', at('raw.pkl'))), [['raw.pkl is a raw Python pickle', 'AGILE_IR_ALLOW_PICKLE=1']]),
    'checkpoint_not_found': ('train', edits(('path.pretrain_network_g', at('nope.pth'))), [['checkpoint not found', 'nope.pth']]),
    'resize_asked_on_a_fitting_arch_typo': ('train', edits(('train.resize_pretrain_gg', True)), [["train.resize_pretrain_gg: unknown option; did you mean 'resize_pretrain_g'?"]]),
    # --- train: several problems at once ----------------------------------------------------
    'three_problems_at_once': ('train', edits(('train.optim_g.lr', -1.0), ('datasets.train.use_hflp', True),
                                              ('datasets.train.dataroot_lq', at('nowhere'))),
                               [['datasets.train.use_hflp'], ['Invalid learning rate'], ['datasets.train.dataroot_lq']]),
    # --- test ------------------------------------------------------------------------------
    'test_missing_data': ('test', edits(('datasets.test_1.dataroot_gt', at('nowhere'))), [['datasets.test_1.dataroot_gt: expected an existing folder']]),
    'test_x2_checkpoint_in_x4': ('test', edits(('path.pretrain_network_g', at('esc_x2.pth'))),
                                 [["is a x2 checkpoint, the options say x4", 'evaluate it with x2 options']]),
    'test_x2_checkpoint_non_strict': ('test', edits(('path.pretrain_network_g', at('esc_x2.pth')), ('path.strict_load_g', False)),
                                      [['is a x2 checkpoint, the options say x4']]),
    'test_other_network_non_strict': ('test', edits(('network_g.dim', 12), ('path.strict_load_g', False)),
                                      [['does not fit network_g (ESC)', 'a test of a partially loaded network gives wrong numbers']]),
    'test_no_datasets': ('test', edits(('datasets', {})), [['datasets: expected at least one test_* or val_* dataset']]),
    'test_checkpoint_not_found': ('test', edits(('path.pretrain_network_g', at('nope.pth'))), [['checkpoint not found']]),
    'test_typo': ('test', edits(('val.metrics.psnr.test_y_chanel', True)), [["did you mean 'test_y_channel'?"]]),
    'test_results_folder_is_a_file': ('test', edits(('name', 'a_file_parent')), None),  # set up below
    # --- leaderboard -----------------------------------------------------------------------
    'leaderboard_x2_checkpoint_in_x4': ('leaderboard', edits(('path.pretrain_network_g', at('esc_x2.pth'))),
                                        [["is a x2 checkpoint, the options say x4"]]),
    'leaderboard_partial_load': ('leaderboard', edits(('network_g.dim', 12), ('path.strict_load_g', False)),
                                 [['does not fit network_g (ESC)']]),
    'leaderboard_checkpoint_not_found': ('leaderboard', edits(('path.pretrain_network_g', at('nope.pth'))), [['checkpoint not found']]),
}
del CASES['test_results_folder_is_a_file']


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob('*'))}


def run_tool(tool, yml, root, capsys):
    """(exit code, stderr text) of the tool's main in-process."""
    module = importlib.import_module(f'agile_ir_plugin.cli.{tool}')
    argv = ['-opt', str(yml)] + (['--out', str(root / 'board')] if tool == 'leaderboard' else [])
    capsys.readouterr()
    try:
        code = module.main(argv)
        err = capsys.readouterr().err
    except SystemExit as exc:
        err = capsys.readouterr().err + (exc.code if isinstance(exc.code, str) else '')
        code = 1 if isinstance(exc.code, str) else exc.code
    return code, err


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_input(case, base, monkeypatch, capsys):
    tool, edit, expected = CASES[case]
    monkeypatch.chdir(base)
    opt = edit(train_opt(base) if tool == 'train' else eval_opt(base), base)
    yml = base / 'cases' / f'{case}.yml'
    yml.parent.mkdir(exist_ok=True)
    yml.write_text(yaml.safe_dump(opt, sort_keys=False))
    before = snapshot(base)
    code, err = run_tool(tool, yml, base, capsys)
    assert code == (2 if tool == 'leaderboard' else 1), (code, err)
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == len(expected), err
    for line, fragments in zip(lines, expected):
        for fragment in fragments:
            assert fragment in line, f'{fragment!r} not in {line!r}'
    assert snapshot(base) == before  # nothing created, moved, archived or changed


def test_free_disk_below_one_checkpoint(base, monkeypatch, capsys):
    from agile_ir_plugin.basicsr import preflight
    monkeypatch.chdir(base)
    monkeypatch.setattr(preflight, 'free_bytes', lambda path: types.SimpleNamespace(free=1000))
    yml = base / 'cases' / 'disk.yml'
    yml.parent.mkdir(exist_ok=True)
    yml.write_text(yaml.safe_dump(train_opt(base), sort_keys=False))
    before = snapshot(base)
    code, err = run_tool('train', yml, base, capsys)
    assert code == 1 and err.count('error: ') == 1, err
    assert '0.0 MiB free on the disk of' in err and 'one checkpoint of this network needs about 1.' in err
    assert snapshot(base) == before


def test_experiments_folder_is_a_file(base, tmp_path, monkeypatch, capsys):
    (tmp_path / 'experiments').write_text('a file where the folder should be')
    monkeypatch.chdir(tmp_path)
    yml = tmp_path / 'opt.yml'
    yml.write_text(yaml.safe_dump(train_opt(base), sort_keys=False))
    before = snapshot(tmp_path)
    code, err = run_tool('train', yml, tmp_path, capsys)
    assert code == 1 and err.count('error: ') == 1, err
    assert f"experiments: cannot create {tmp_path / 'experiments' / 'm'}: {tmp_path / 'experiments'} is a file" in err
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders: permissions cannot be tested')
def test_unwritable_results_folder(base, tmp_path, monkeypatch, capsys):
    (tmp_path / 'results').mkdir(mode=0o555)
    monkeypatch.chdir(tmp_path)
    yml = base / 'cases' / 'ro.yml'
    yml.write_text(yaml.safe_dump(eval_opt(base), sort_keys=False))
    code, err = run_tool('test', yml, tmp_path, capsys)
    assert code == 1 and 'is not writable by this user' in err


@pytest.mark.parametrize('content, fragment', [(None, 'options file not found'), ('a: [1', 'is not valid YAML'),
                                               ('- 1\n- 2\n', 'expected a mapping of option keys')])
def test_unreadable_options_file(base, tmp_path, monkeypatch, capsys, content, fragment):
    monkeypatch.chdir(base)
    yml = tmp_path / 'o.yml'
    if content is not None:
        yml.write_text(content)
    before = snapshot(base)
    for tool in ('train', 'test'):
        code, err = run_tool(tool, yml, base, capsys)
        assert code == 1 and err.count('error: ') == 1 and fragment in err and 'Traceback' not in err, err
    assert snapshot(base) == before


def test_leaderboard_arch_mode_refuses_a_checkpoint_of_another_scale(base, monkeypatch, capsys):
    """Before: 'Resizing to_img from x2 to x4' and a 17.08 dB row."""
    monkeypatch.chdir(base)
    from agile_ir_plugin.cli import leaderboard
    before = snapshot(base)
    kwargs = {k: v for k, v in ESC_SMALL.items() if k not in ('type', 'upscaling_factor')}
    import json
    code = leaderboard.main(['--arch', 'ESC', '--arch-args', json.dumps(kwargs), '--ckpt', str(base / 'esc_x2.pth'),
                             '--scale', '4', '--datasets', 'tiny', '--root', str(base), '--out', str(base / 'board')])
    err = capsys.readouterr().err
    assert code == 2 and err.count('error: ') == 1, err
    assert "shape mismatches 'to_img.weight: (12, 8, 3, 3) in the checkpoint vs (48, 8, 3, 3)'" in err
    assert snapshot(base) == before


def test_a_good_case_passes_the_preflight(base):
    """The matrix's base options are fine: each case fails for its own edit only."""
    from agile_ir_plugin.basicsr.preflight import run_preflight
    opt = train_opt(base)
    opt['path']['experiments_root'] = str(base / 'experiments' / 'm')
    assert run_preflight(opt, 'train') == []
    assert run_preflight(eval_opt(base), 'test') == []
    assert run_preflight(eval_opt(base), 'leaderboard') == []
    opt['path']['pretrain_network_g'] = str(base / 'esc_x2.pth')
    opt['train']['resize_pretrain_g'] = True
    assert run_preflight(opt, 'train') == [f"path.pretrain_network_g: '{base / 'esc_x2.pth'}' [params] is a x2 "
                                           'checkpoint, the options say x4 (network_g.upscaling_factor): resized on '
                                           'load as train.resize_pretrain_g asks.']


def test_resume_after_the_network_options_changed(base, tmp_path, monkeypatch, capsys):
    """Before: RuntimeError: Error(s) in loading state_dict, after the run had started."""
    exp = tmp_path / 'experiments' / 'r'
    (exp / 'training_states').mkdir(parents=True)
    (exp / 'models').mkdir()
    torch.save({'epoch': 0, 'iter': 2, 'optimizers': [], 'schedulers': []}, exp / 'training_states' / '2.state')
    torch.save({'params': _esc_state(4)}, exp / 'models' / 'net_g_2.pth')
    opt = train_opt(base)
    opt['name'] = 'r'
    opt['network_g']['dim'] = 12
    yml = tmp_path / 'opt.yml'
    yml.write_text(yaml.safe_dump(opt, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    module = importlib.import_module('agile_ir_plugin.cli.train')
    with pytest.raises(SystemExit) as exc:
        module.main(['-opt', str(yml), '--auto_resume'])
    msg = exc.value.code
    assert isinstance(msg, str) and msg.count('error: ') == 1 and 'Traceback' not in msg, msg
    assert msg.startswith(f"error: network_g: the options no longer match the state being resumed (iter 2, "
                          f"{exp / 'models' / 'net_g_2.pth'}): shape mismatches"), msg
    assert 'restore the network options it was trained with, or train under a new name' in msg
    assert snapshot(tmp_path) == before


def test_a_good_test_run_writes_its_results(base, tmp_path, monkeypatch, capsys):
    """The rewritten test pipeline (BasicSR's flow after the preflight) still tests: results and a log."""
    monkeypatch.chdir(tmp_path)
    opt = eval_opt(base)
    opt['name'] = 'good'
    yml = tmp_path / 'opt.yml'
    yml.write_text(yaml.safe_dump(opt, sort_keys=False))
    code, err = run_tool('test', yml, tmp_path, capsys)
    assert code == 0, err
    assert list((tmp_path / 'results' / 'good').glob('test_good_*.log'))
