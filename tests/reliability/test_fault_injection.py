"""Kill training (SIGKILL) at known places -- mid-iteration, inside a weights file write, inside
the state write, between the weights and the state renames, before the staging cleanup, inside
the final ``latest`` save -- and at random moments; auto-resume after each kill.  Every checkpoint
present after a kill must load, none may be lost, and the final weights must equal those of an
uninterrupted run bit for bit.  Also: SIGTERM saves and exits 0, and the resumed run is exact.

Runs are forked from one server process (``trainproc``), so a kill costs milliseconds, not an
interpreter start-up."""
import random
import re

import pytest

from conftest import dump_yaml, write_sr_pairs
from trainproc import server  # noqa: F401  (the module-scoped fixture)
from trainproc import assert_same_weights, load_weights, tiny_sr_options

from agile_ir_plugin.checkpoint import load_checkpoint

TOTAL = 16
NAME = 'faults'


@pytest.fixture(scope='module')
def setup(tmp_path_factory, server):
    """Data, options, and the uninterrupted reference run."""
    root = tmp_path_factory.mktemp('faults')
    data = write_sr_pairs(root / 'data', 4, n=3, size=(64, 64))
    opt = dump_yaml(tiny_sr_options(data, NAME, TOTAL), root / 'opt.yml')
    whole = root / 'whole'
    whole.mkdir()
    run = server.run(['-opt', opt], whole, root / 'whole.log')
    assert run.code == 0, run.text()[-3000:]
    return {'root': root, 'opt': opt,
            'final': load_weights(whole / 'experiments' / NAME / 'models' / f'net_g_{TOTAL}.pth'),
            'latest': load_weights(whole / 'experiments' / NAME / 'models' / 'net_g_latest.pth')}


def complete_checkpoints(exp):
    """{iter: weights} for every state present; asserts each state and every weights file loads."""
    found = {}
    for pth in (exp / 'models').glob('*.pth'):
        load_checkpoint(pth)  # raises CheckpointError if truncated: an atomic write never leaves one
    for state_file in (exp / 'training_states').glob('*.state'):
        state = load_checkpoint(state_file)
        it = int(state_file.stem)
        assert state['iter'] == it and state['agile_ir']['epoch_iter'] >= 1
        found[it] = load_checkpoint(exp / 'models' / f'net_g_{it}.pth')  # its weights are there and load
    return found


def resumed_from(text):
    m = re.search(r'Resuming training from epoch: \d+, iter: (\d+)', text)
    return int(m.group(1)) if m else 0


# (stall point, iteration) for the deterministic kills; 'timed' = a random moment after the next
# iteration started; '@-1' is the final save of net_g_latest.pth.
PLAN = [('after_step', 3), ('inside_weights_write', 4), ('before_state_write', 5), ('inside_state_write', 6),
        ('between_renames', 7), ('after_state_rename', 8), ('timed', None), ('timed', None), ('timed', None),
        ('inside_weights_write', -1), ('between_renames', -1)]


@pytest.mark.slow
def test_sigkill_anywhere_loses_nothing_and_resume_is_bitwise_exact(tmp_path, server, setup):
    exp = tmp_path / 'experiments' / NAME
    rng = random.Random(0)
    seen = {}  # iter -> weights of the first complete checkpoint seen for it
    kills, resumes = 0, []
    argv = ['-opt', setup['opt'], '--auto_resume']
    for n, (point, at) in enumerate(PLAN):
        log = tmp_path / f'run{n}.log'
        if point == 'timed':
            # a backstop stall 3 iterations ahead keeps the run alive for the kill however fast the
            # machine is (without it a fast machine finished all iterations before the kill landed)
            backstop = max(complete_checkpoints(exp), default=0) + 3
            run = server.start(argv, tmp_path, log,
                               env={'AGILE_IR_STALL_AT': f'after_step@{backstop}', 'AGILE_IR_STALL_SECONDS': 120})
            start = resumed_from(run.wait_for(r'Start training from epoch: \d+, iter: \d+').string)
            if run.wait_for(rf'iter:\s+{start + 1},') is None:
                pytest.fail(f'run {n} ended before its first iteration:\n{run.text()[-3000:]}')
            import time
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            run = server.start(argv, tmp_path, log,
                               env={'AGILE_IR_STALL_AT': f'{point}@{at}', 'AGILE_IR_STALL_SECONDS': 120})
            assert run.wait_for(rf'AGILE_IR_STALLED {point} {at}\b') is not None, run.text()[-3000:]
        if not run.alive():  # a timed kill that came too late: the run finished
            assert run.wait() == 0, run.text()[-3000:]
            continue
        run.kill()
        assert run.wait() == -9
        kills += 1
        text = run.text()
        resumes.append(resumed_from(text))

        # every checkpoint present loads; none seen before is lost; a rewritten one is identical
        found = complete_checkpoints(exp)
        for it, w in seen.items():
            assert it in found, f'after kill {kills} ({point}@{at}) checkpoint {it} is gone'
            assert_same_weights(w, found[it], f'checkpoint {it} rewritten after kill {kills}')
        for it, w in found.items():
            seen.setdefault(it, w)
        if point not in ('timed', 'after_state_rename') and at != -1:
            assert max(found) == at - 1, (point, at, sorted(found))  # the interrupted save is not published
        if point == 'after_state_rename':
            assert max(found) == at and (exp / f'.saving_{at}').is_dir()
        if point == 'between_renames' and at != -1:
            assert (exp / 'models' / f'net_g_{at}.pth').is_file()  # published weights without a state

    run = server.run(argv, tmp_path, tmp_path / 'final.log')
    assert run.code == 0, run.text()[-3000:]
    resumes.append(resumed_from(run.text()))
    assert kills >= 10, kills
    # auto-resume took the newest complete checkpoint every time (the deterministic ones: known)
    assert resumes[1:6] == [2, 3, 4, 5, 6], resumes
    assert resumes[6] == 8, resumes
    assert resumes[-2:] == [TOTAL, TOTAL], resumes  # the 'latest' kills resume from the last state
    assert 'Removed .saving_8' in (tmp_path / 'run6.log').read_text()
    assert not list(exp.glob('.saving_*'))

    assert_same_weights(setup['final'], load_weights(exp / 'models' / f'net_g_{TOTAL}.pth'), 'final')
    assert_same_weights(setup['latest'], load_weights(exp / 'models' / 'net_g_latest.pth'), 'latest')
    assert sorted(complete_checkpoints(exp)) == list(range(1, TOTAL + 1))


@pytest.mark.slow
def test_sigterm_saves_exits_zero_and_resumes_exactly(tmp_path, server, setup):
    argv = ['-opt', setup['opt'], '--auto_resume']
    run = server.start(argv, tmp_path, tmp_path / 'term.log',
                       env={'AGILE_IR_STALL_AT': 'after_step@4', 'AGILE_IR_STALL_SECONDS': 1.5})
    assert run.wait_for(r'AGILE_IR_STALLED after_step 4') is not None, run.text()[-3000:]
    run.kill(15)  # SIGTERM inside iteration 4: it is finished, saved, and the process exits
    assert run.wait() == 0, run.text()[-3000:]
    assert 'SIGTERM: saved iter 4; exiting' in run.text()
    exp = tmp_path / 'experiments' / NAME
    states = sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state'))
    assert states == [1, 2, 3, 4]  # save_freq 1; nothing after the signal
    assert not (exp / 'models' / 'net_g_latest.pth').exists()
    load_checkpoint(exp / 'training_states' / '4.state')

    run = server.run(argv, tmp_path, tmp_path / 'resume.log')
    assert run.code == 0, run.text()[-3000:]
    assert resumed_from(run.text()) == 4
    assert_same_weights(setup['final'], load_weights(exp / 'models' / f'net_g_{TOTAL}.pth'), 'final')
