"""Numerical guards and mixed-precision training, in-process through tools/train.py's ``main``.

- NaN injection: a test-only loss (registered here, not in the package) returns NaN at chosen
  iterations; each such step is skipped and counted, an isolated one does not stop the run,
  ``train.max_bad_steps`` consecutive ones do, with one ``error:`` line, and the newest checkpoint
  on disk is the last good one.
- ``train.amp: bf16 | fp16``: training runs, differs from fp32 (autocast is really on) but stays
  close to it, saves the GradScaler state, and a run stopped and resumed equals an uninterrupted
  one bit for bit."""
import importlib

import pytest
import torch
from torch import nn

from conftest import REPO_ROOT, dump_yaml, write_sr_pairs
from trainproc import assert_same_weights, load_weights, tiny_sr_options


def _train_main():
    module = importlib.import_module('agile_ir_plugin.cli.train')
    return module.main


class NaNAtItersL1Loss(nn.Module):
    """L1, but NaN at the (1-based) calls in ``BAD`` -- one call per training iteration."""
    BAD = set()
    calls = 0

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()

    def forward(self, pred, target, **kwargs):
        type(self).calls += 1
        loss = (pred - target).abs().mean()
        return loss * float('nan') if type(self).calls in self.BAD else loss


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_sr_pairs(tmp_path_factory.mktemp('data'), 4, n=3, size=(64, 64))


def test_nonfinite_steps_are_skipped_counted_and_stop_after_max_bad_steps(tmp_path, monkeypatch, data):
    from basicsr.utils.registry import LOSS_REGISTRY
    if 'NaNAtItersL1Loss' not in LOSS_REGISTRY:
        LOSS_REGISTRY.register(NaNAtItersL1Loss)
    monkeypatch.setattr(NaNAtItersL1Loss, 'BAD', {3, 6, 7, 8, 9})
    monkeypatch.setattr(NaNAtItersL1Loss, 'calls', 0)
    monkeypatch.chdir(tmp_path)
    opt = tiny_sr_options(data, 'nan', 12)
    opt['train']['pixel_opt'] = {'type': 'NaNAtItersL1Loss', 'loss_weight': 1.0}
    opt['train']['max_bad_steps'] = 3
    with pytest.raises(SystemExit) as exc:
        _train_main()(['-opt', str(dump_yaml(opt, tmp_path / 'opt.yml'))])
    msg = exc.value.code
    assert msg.startswith('error: stopped at iter 8: 3 consecutive steps had a non-finite loss or gradient '
                          '(train.max_bad_steps=3; 4 skipped in all)'), msg
    exp = tmp_path / 'experiments' / 'nan'
    # iter 5's weights gave the three bad steps in a row (6, 7, 8): the last good checkpoint is 4
    assert (f'the last good checkpoint is iter 4 in {exp / "models"} (iter 5 holds the weights that gave the '
            'non-finite steps)') in msg and '\n' not in msg
    assert 'path:resume_state=<training_states/4.state>' in msg
    assert NaNAtItersL1Loss.calls == 8  # it stopped at the 3rd bad step in a row, not later

    states = sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state'))
    assert states == [1, 2, 4, 5]  # none while the last step was bad (3, 6, 7), none after the stop
    state = torch.load(exp / 'training_states' / '5.state', weights_only=True)
    assert state['agile_ir']['skipped_steps'] == 1
    assert int(state['optimizers'][0]['state'][0]['step']) == 4  # 5 iterations, 1 optimizer step skipped
    for w in load_weights(exp / 'models' / 'net_g_5.pth').values():
        assert all(torch.isfinite(t).all() for t in w.values())


def _train_with_optimizer(tmp_path, data, name, optim, total=6):
    opt = tiny_sr_options(data, name, total)
    opt['train']['optim_g'] = optim
    opt['train']['max_bad_steps'] = 3
    with pytest.raises(SystemExit) as exc:
        _train_main()(['-opt', str(dump_yaml(opt, tmp_path / f'{name}.yml'))])
    return exc.value.code, tmp_path / 'experiments' / name


def test_a_step_that_makes_weights_nonfinite_stops_the_run_before_saving(tmp_path, monkeypatch, data):
    """AdamW's decoupled decay multiplies the weights by 1 - lr * wd = -1e40: inf in fp32 although the
    gradients are finite.  Checking gradients only, the run published net_g_1.pth full of inf/NaN."""
    monkeypatch.chdir(tmp_path)
    msg, exp = _train_with_optimizer(tmp_path, data, 'infw', {'type': 'AdamW', 'lr': 1e20, 'weight_decay': 1e20})
    assert msg.startswith('error: stopped at iter 1: the optimizer step made weights non-finite'), msg
    assert 'no checkpoint of this run holds good weights' in msg and '\n' not in msg
    assert not list((exp / 'models').glob('*.pth')) and not list((exp / 'training_states').glob('*.state'))


def test_lr_1e20_does_not_call_the_checkpoint_that_caused_the_nans_good(tmp_path, monkeypatch, data):
    """lr 1e20: step 1 leaves finite weights of ~5e19 (saved as iter 1), every later forward is NaN.
    The guard used to call iter 1 'the last good one'; its weights are the ones that gave the NaNs."""
    monkeypatch.chdir(tmp_path)
    msg, exp = _train_with_optimizer(tmp_path, data, 'lr20', {'type': 'AdamW', 'lr': 1e20, 'weight_decay': 1e-4})
    assert msg.startswith('error: stopped at iter 4: 3 consecutive steps had a non-finite loss'), msg
    assert 'no checkpoint of this run holds good weights' in msg
    w = load_weights(exp / 'models' / 'net_g_1.pth')['params']
    assert max(float(t.abs().max()) for t in w.values()) > 1e18  # what the old message called good


def _run(tmp_path, data, name, total, amp, extra_argv=()):
    opt = tiny_sr_options(data, name, total)
    opt['train']['amp'] = amp
    return _train_main()(['-opt', str(dump_yaml(opt, tmp_path / f'{name}.yml')), *extra_argv])


@pytest.mark.slow
@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_amp_training_is_close_to_fp32_and_resumes_exactly(tmp_path, monkeypatch, data, amp):
    monkeypatch.chdir(tmp_path)
    total = 4
    assert _run(tmp_path, data, 'fp32', total, None) == 0
    assert _run(tmp_path, data, 'whole', total, amp) == 0
    assert _run(tmp_path, data, 'parts', total, amp, ['--force_yml', 'train:total_iter=2']) == 0
    state = torch.load(tmp_path / 'experiments' / 'parts' / 'training_states' / '2.state', weights_only=True)
    assert state['agile_ir']['amp']['mode'] == amp
    assert (state['agile_ir']['amp']['scaler'] is not None) == (amp == 'fp16')
    assert _run(tmp_path, data, 'parts', total, amp, ['--auto_resume']) == 0

    ref = load_weights(tmp_path / 'experiments' / 'fp32' / 'models' / f'net_g_{total}.pth')['params']
    whole = load_weights(tmp_path / 'experiments' / 'whole' / 'models' / f'net_g_{total}.pth')
    parts = load_weights(tmp_path / 'experiments' / 'parts' / 'models' / f'net_g_{total}.pth')
    assert_same_weights(whole, parts, f'{amp} resume')
    assert not any(t.dtype in (torch.float16, torch.bfloat16) for t in whole['params'].values())  # fp32 master
    a = torch.cat([t.flatten() for t in ref.values() if t.is_floating_point()])
    b = torch.cat([t.flatten() for t in whole['params'].values() if t.is_floating_point()])
    assert torch.isfinite(b).all() and not torch.equal(a, b)  # autocast was on
    # 4 Adam steps move the weights by at most ~ 4 * lr * sqrt(n) (L2); half precision changes that
    # path by ~1.5 % (bf16) / ~1.0 % (fp16) measured; the bound is 5 %
    travel = 4 * 2e-3 * (a.numel() ** 0.5)
    assert (a - b).norm() < 0.05 * travel, ((a - b).norm(), travel)
