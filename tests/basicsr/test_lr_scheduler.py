"""CosineAnnealingRestartCyclicLR against the defining formula of Restormer's schedule."""
import io
import math

import pytest
import torch

from agile_ir_plugin.basicsr.models.lr_scheduler import CosineAnnealingRestartCyclicLR, build_scheduler


def brute_force_lr(t, base_lr, periods, restart_weights, eta_mins):
    """Walk the cycles one by one: the cycle holding step t, and the cosine inside it."""
    start = 0
    for period, weight, eta_min in zip(periods, restart_weights, eta_mins):
        if t <= start + period:
            return eta_min + weight * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * (t - start) / period))
        start += period
    raise AssertionError('t beyond the schedule')


def make_optimizer(lr):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


@pytest.mark.parametrize('periods, weights, eta_mins', [
    ([10, 20], [1, 1], [3e-4, 1e-6]),          # Restormer's shape: constant, then cosine
    ([5, 7, 9], [1, 0.5, 0.25], [1e-5, 2e-5, 0.0]),
])
def test_stepping_matches_formula(periods, weights, eta_mins):
    base = 3e-4
    opt = make_optimizer(base)
    sched = CosineAnnealingRestartCyclicLR(opt, periods, weights, eta_mins)
    for t in range(sum(periods) + 1):
        lr = opt.param_groups[0]['lr']
        assert lr == pytest.approx(brute_force_lr(t, base, periods, weights, eta_mins), rel=1e-12, abs=1e-15), t
        opt.step()
        sched.step()


def test_official_restormer_schedule_at_chosen_iterations():
    """periods [92000, 208000], eta_mins [3e-4, 1e-6]: flat 3e-4 for 92k steps, then a half cosine to 1e-6."""
    base, periods, weights, eta_mins = 3e-4, [92000, 208000], [1, 1], [3e-4, 1e-6]
    opt = make_optimizer(base)
    sched = CosineAnnealingRestartCyclicLR(opt, periods, weights, eta_mins)
    for t in [0, 1, 50000, 92000, 92001, 150000, 196000, 250000, 299999, 300000]:
        sched.last_epoch = t
        expected = brute_force_lr(t, base, periods, weights, eta_mins)
        assert sched.get_lr()[0] == pytest.approx(expected, rel=1e-12), t
    sched.last_epoch = 92000 + 104000  # middle of the cosine: halfway between 3e-4 and 1e-6
    assert sched.get_lr()[0] == pytest.approx((3e-4 + 1e-6) / 2, rel=1e-12)
    sched.last_epoch = 300000
    assert sched.get_lr()[0] == pytest.approx(1e-6, rel=1e-12)
    sched.last_epoch = 400000  # past the end: holds the final value (the official code raises)
    assert sched.get_lr()[0] == pytest.approx(1e-6, rel=1e-12)


def test_state_dict_loads_weights_only_and_resumes():
    periods, weights, eta_mins = [4, 6], [1, 1], [1e-3, 1e-5]
    opt = make_optimizer(1e-3)
    sched = CosineAnnealingRestartCyclicLR(opt, periods, weights, eta_mins)
    for _ in range(5):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({'schedulers': [sched.state_dict()], 'optimizers': [opt.state_dict()]}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = make_optimizer(1e-3)
    sched2 = CosineAnnealingRestartCyclicLR(opt2, periods, weights, eta_mins)
    opt2.load_state_dict(state['optimizers'][0])
    sched2.load_state_dict(state['schedulers'][0])
    for _ in range(4):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt2.param_groups[0]['lr'] == opt.param_groups[0]['lr']


def test_build_scheduler_by_name_and_errors():
    opt = make_optimizer(1e-3)
    spec = {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [3, 3], 'restart_weights': [1, 1],
            'eta_mins': [1e-3, 0.0]}
    assert isinstance(build_scheduler(opt, spec), CosineAnnealingRestartCyclicLR)
    assert spec['type'] == 'CosineAnnealingRestartCyclicLR'  # the options are not consumed
    assert build_scheduler(opt, {'type': 'MultiStepLR', 'milestones': [1]}) is None  # left to BasicSR
    with pytest.raises(ValueError, match='one entry per cycle'):
        CosineAnnealingRestartCyclicLR(make_optimizer(1e-3), [3, 3], [1], [0.0, 0.0])
