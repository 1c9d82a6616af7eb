"""The MMagic entry points (runner.train_main / test_main, tools/train.py CONFIG.py) check their inputs
before mmengine's Runner creates work_dir/<timestamp>/: a missing data folder, checkpoint or config,
an unparsable config or a work_dir that cannot be created is one ``error:`` line each, all at once,
exit status 1, no traceback, nothing written.  Before, each was a traceback from inside mmengine or
the dataset, after the work folder was made.

One fresh interpreter (mmagic_helpers.run_python: MMagic stays out of the pytest process) calls
train_main / test_main in-process for each case, records the SystemExit and what was printed, then
ends with an uncaught ``agile_ir_plugin.cli.train.main`` call, whose exit status and stderr are the
real command's."""
import json

import pytest

from mmagic_helpers import REPO_ROOT, requires_mmagic, run_python

pytestmark = [pytest.mark.mmagic, requires_mmagic]

ESC_X4 = REPO_ROOT / 'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py'

# the real ESC x4 config with its train / val / test data roots moved (and one test set)
CONFIG = '''
_base_ = [{config!r}]
train_dataloader = dict(dataset=dict(data_root={train!r}))
val_dataloader = dict(dataset=dict(data_root={val!r}))
_test = _base_.test_dataloader[0]
_test['dataset']['data_root'] = {val!r}
test_dataloader = [_test]
test_evaluator = [_base_.test_evaluator[0]]
'''

SCRIPT = r'''
import contextlib, io, json, os, sys
from argparse import Namespace
from mmengine.config import Config
from agile_ir_plugin.mmagic.runner import test_main, train_main

def call(main, argv, work):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as err:
            code = err.code
        except BaseException as err:  # what these commands did before: a traceback
            code = f'raised {type(err).__name__}: {err}'
    return dict(code=code, printed=out.getvalue(), work_created=os.path.exists(work))

r = {}
r['train_data'] = call(train_main, [BAD, '--work-dir', T + '/w1'], T + '/w1')
r['train_load_from'] = call(train_main, [GOOD, '--work-dir', T + '/w2', '--cfg-options',
                                         f'load_from={T}/missing.pth'], T + '/w2')
r['train_all'] = call(train_main, [BAD, '--work-dir', T + '/afile/w3', '--resume', T + '/gone.pth'], T + '/afile/w3')
r['train_flag'] = call(train_main, [GOOD, '--work-dir', T + '/w8', '--auto-scale-lr', '--cfg-options',
                                    'auto_scale_lr=None'], T + '/w8')
r['test'] = call(test_main, [BAD, T + '/missing.pth', '--work-dir', T + '/w4'], T + '/w4')
r['no_config'] = call(train_main, [T + '/no_such.py'], T + '/work_dirs')
r['broken_config'] = call(test_main, [T + '/broken.py', T + '/ckpt.pth'], T + '/work_dirs')
try:  # nothing wrong: no problem reported (the real configs' layouts, folders empty)
    from agile_ir_plugin.mmagic.preflight import check_config
    good = Config.fromfile(GOOD)
    good.work_dir = T + '/w5'
    r['good_train'] = check_config(good, Namespace(config=GOOD, resume=None), 'train')
    good.load_from = T + '/ckpt.pth'
    r['good_test'] = check_config(good, Namespace(config=GOOD, checkpoint=good.load_from, out=T + '/m/x.json'), 'test')
    spectral = dict(type='agile_ir.SpectralDataset', data_root=T + '/ARAD', ann_file='split_txt/train_list.txt')
    cfg = Config(dict(work_dir=T + '/w6', train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2,
                                                                             dataset=spectral))))
    r['spectral'] = check_config(cfg, Namespace(config='spectral.py', resume=None), 'train')
except BaseException as err:
    r['check_config'] = f'{type(err).__name__}: {err}'
print('RESULTS ' + json.dumps(r), flush=True)

from agile_ir_plugin.cli.train import main  # the command itself: its exit status and stderr
sys.exit(main([BAD, '--work-dir', T + '/w7']))
'''


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('mmagic_preflight')
    for folder in ('DIV2K/DIV2K_train_HR', 'good/DIV2K/DIV2K_train_HR', 'good/DIV2K/DIV2K_train_LR_bicubic/X4',
                   'good/Set5/HR', 'good/Set5/LR_bicubic/X4', 'ARAD/Train_RGB'):
        (tmp / folder).mkdir(parents=True)
    (tmp / 'afile').write_text('a file where the work_dir needs a folder')
    (tmp / 'ckpt.pth').write_bytes(b'')
    (tmp / 'broken.py').write_text('model = dict(type="ESC",\n')
    bad, good = tmp / 'bad.py', tmp / 'good.py'
    bad.write_text(CONFIG.format(config=str(ESC_X4), train=str(tmp / 'DIV2K'), val=str(tmp / 'nowhere/Set5')))
    good.write_text(CONFIG.format(config=str(ESC_X4), train=str(tmp / 'good/DIV2K'), val=str(tmp / 'good/Set5')))
    script = f'T = {str(tmp)!r}\nBAD = {str(bad)!r}\nGOOD = {str(good)!r}\n' + SCRIPT
    proc = run_python(script, cwd=tmp)
    results = [line for line in proc.stdout.splitlines() if line.startswith('RESULTS ')]
    assert results, proc.stdout[-3000:] + proc.stderr[-5000:]
    return dict(r=json.loads(results[-1][len('RESULTS '):]), proc=proc, tmp=tmp, bad=str(bad), good=str(good))


def _errors(case):
    """The error lines of a case that exited as the commands' preflight does (exit 1: a str code)."""
    assert isinstance(case['code'], str) and case['code'].startswith('error: '), case
    assert 'Traceback' not in case['printed'], case['printed']
    assert not case['work_created']
    lines = case['code'].splitlines()
    assert all(line.startswith('error: ') for line in lines), lines
    return lines


def test_train_missing_data_folders_one_line_each_nothing_written(run):
    t, bad = run['tmp'], run['bad']
    assert _errors(run['r']['train_data']) == [
        f"error: {bad}: train_dataloader.dataset.data_prefix.img: no folder '{t}/DIV2K/DIV2K_train_LR_bicubic/X4' "
        "(data_root + data_prefix['img']); fix data_prefix or data_root in the config.",
        f"error: {bad}: val_dataloader.dataset.data_root: no folder '{t}/nowhere/Set5' (BasicImageDataset reads "
        "data_root/data_prefix); set data_root in the config to where the data is.",
    ]


def test_train_missing_load_from(run):
    assert _errors(run['r']['train_load_from']) == [
        f"error: {run['good']}: load_from: the checkpoint '{run['tmp']}/missing.pth' does not exist; expected a .pth "
        "file saved by mmengine (work_dir/iter_N.pth) or a converted one."]


def test_train_reports_every_problem_at_once(run):
    lines = _errors(run['r']['train_all'])
    assert len(lines) == 4, lines
    assert lines[:2] == _errors(run['r']['train_data'])
    assert lines[2].startswith(f"error: --resume: the checkpoint '{run['tmp']}/gone.pth' does not exist;")
    assert lines[3] == (f"error: work_dir: cannot create {run['tmp']}/afile/w3: {run['tmp']}/afile is a file, "
                        "not a folder.")
    assert (run['tmp'] / 'afile').read_text() == 'a file where the work_dir needs a folder'


def test_train_flag_that_cannot_apply_is_one_line(run):
    assert _errors(run['r']['train_flag']) == [
        f"error: --auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=N)` in {run['good']} (N: the global "
        "batch size its learning rate is meant for)."]


def test_test_missing_checkpoint_and_data(run):
    t = run['tmp']
    assert _errors(run['r']['test']) == [
        f"error: {run['bad']}: test_dataloader[0].dataset.data_root: no folder '{t}/nowhere/Set5' (BasicImageDataset "
        "reads data_root/data_prefix); set data_root in the config to where the data is.",
        f"error: CHECKPOINT: the checkpoint '{t}/missing.pth' does not exist; expected a .pth file saved by "
        "mmengine (work_dir/iter_N.pth) or a converted one."]


def test_missing_or_broken_config_is_one_line(run):
    t = run['tmp']
    assert _errors(run['r']['no_config']) == [
        f'error: {t}/no_such.py: no such config file (expected an mmengine .py config, e.g. '
        'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py).']
    [line] = _errors(run['r']['broken_config'])
    assert line.startswith(f'error: {t}/broken.py: cannot be loaded as an mmengine config: SyntaxError: '), line


def test_valid_inputs_pass_and_dataset_defaults_and_wrappers_are_followed(run):
    r, t = run['r'], run['tmp']
    assert 'check_config' not in r, r.get('check_config')
    assert r['good_train'] == [] and r['good_test'] == []
    # SpectralDataset's default data_prefix (Train_RGB, Train_Spec) under the RepeatDataset wrapper
    assert r['spectral'] == [
        f"spectral.py: train_dataloader.dataset.dataset.data_prefix.gt: no folder '{t}/ARAD/Train_Spec' "
        "(data_root + data_prefix['gt']); fix data_prefix or data_root in the config.",
        f"spectral.py: train_dataloader.dataset.dataset.ann_file: no file '{t}/ARAD/split_txt/train_list.txt' "
        "(data_root + ann_file); fix ann_file or data_root in the config."]


def test_command_exits_1_with_the_error_lines_on_stderr(run):
    proc, t = run['proc'], run['tmp']
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith('error: ')] == \
        _errors(run['r']['train_data'])
    assert not (t / 'w7').exists() and not (t / 'work_dirs').exists()
