"""Saving that cannot lie: a full disk and a read-only experiment folder stop the run with one
``error:`` line and a non-zero exit, publish no partial file and never log "Saved" for it;
``--auto_resume`` with every state corrupt lists each state and why instead of silently starting
over; a SIGTERM in the first second after launch exits 0 with one line.

Disk-full and read-only cases run each training in a private mount namespace (a tmpfs of a few
dozen KB, a read-only bind mount) made by the fork server's child (needs root and ``unshare``;
skipped elsewhere with the reason)."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, dump_yaml, write_sr_pairs
from trainproc import server, tiny_sr_options  # noqa: F401  (server: the module-scoped fixture)

from agile_ir_plugin.checkpoint import load_checkpoint


def _mount_namespaces_work():
    if os.geteuid() != 0 or shutil.which('unshare') is None:
        return 'needs root and unshare(1) for a private mount namespace'
    probe = subprocess.run(['unshare', '-m', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=16k tmpfs "$d" '
                            '&& umount "$d" && rmdir "$d"'], capture_output=True, text=True)
    return None if probe.returncode == 0 else f'cannot mount a tmpfs in a private namespace: {probe.stderr.strip()}'


NO_MOUNTS = _mount_namespaces_work()
needs_mounts = pytest.mark.skipif(NO_MOUNTS is not None, reason=str(NO_MOUNTS))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_sr_pairs(tmp_path_factory.mktemp('data'), 4, n=3, size=(64, 64))


def snapshot(root):
    """{relative path: bytes or 'dir'} of everything under ``root``."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            found[os.path.relpath(os.path.join(folder, d), root)] = 'dir'
        for f in files:
            path = os.path.join(folder, f)
            with open(path, 'rb') as fh:
                found[os.path.relpath(path, root)] = fh.read()
    return found


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith('error:')]


def tmpfs(folder, size):
    return [['-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', folder]]


def fill(folder, leave):
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    st = os.statvfs(folder)
    with open(os.path.join(folder, 'filler'), 'wb') as f:
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - leave)


@needs_mounts
@pytest.mark.parametrize('case', ['final', 'periodic_state'])
def test_disk_full_stops_with_one_line_and_publishes_nothing_partial(tmp_path, server, data, case):
    """The run starts on a 4 MiB tmpfs (the preflight's free-space check passes) that another
    program fills while iteration 2 (1) is running, leaving 64 KB (100 KB).  'final': the last save
    (net_g_latest.pth, 92 KB) does not fit: it used to publish a truncated net_g_latest.pth, log it
    as saved and exit 0.  'periodic_state': iter 1's weights fit but its .state (95 KB) does not:
    nothing of iter 1 may be published."""
    total, save_freq, at, leave = (2, 100, 2, 64 << 10) if case == 'final' else (3, 1, 1, 100 << 10)
    opt = dump_yaml(tiny_sr_options(data, 'full', total, save_freq=save_freq), tmp_path / 'opt.yml')
    work = tmp_path / 'work'
    (work / 'experiments').mkdir(parents=True)
    run = server.start(['-opt', opt], work, tmp_path / 'run.log', mounts=tmpfs(work / 'experiments', '4m'),
                       env={'AGILE_IR_STALL_AT': f'after_step@{at}', 'AGILE_IR_STALL_SECONDS': 3})
    assert run.wait_for(rf'AGILE_IR_STALLED after_step {at}') is not None, run.text()[-3000:]
    fill(f'/proc/{run.pid}/root{work / "experiments"}', leave)  # the run's own view of its tmpfs
    run.wait()
    text = run.text()
    assert run.code == 1, text[-3000:]
    assert 'Traceback' not in text and 'Still cannot save' not in text, text[-3000:]
    errors = error_lines(text)
    assert len(errors) == 1 and 'No space left on device' in errors[0], errors
    name = 'net_g_latest.pth' if case == 'final' else '1.state'
    assert f'cannot save {name}' in errors[0] and 'nothing of this checkpoint was published' in errors[0]
    assert 'Saved checkpoint' not in text
    # the tmpfs vanished with the run's namespace: the folder on the real disk holds nothing
    assert not any((work / 'experiments').iterdir())


@needs_mounts
def test_read_only_experiment_folder_is_one_error_and_changes_nothing(tmp_path, server, data):
    opt = dump_yaml(tiny_sr_options(data, 'ro', 2), tmp_path / 'opt.yml')
    run = server.run(['-opt', opt], tmp_path, tmp_path / 'first.log')
    assert run.code == 0, run.text()[-3000:]
    exp = tmp_path / 'experiments' / 'ro'
    before = snapshot(tmp_path / 'experiments')
    read_only = [['--bind', exp, exp], ['-o', 'remount,bind,ro', exp]]
    run = server.run(['-opt', opt, '--auto_resume', '--force_yml', 'train:total_iter=4'], tmp_path,
                     tmp_path / 'second.log', mounts=read_only)
    text = run.text()
    assert run.code == 1, text[-3000:]
    assert 'Traceback' not in text, text[-3000:]
    errors = error_lines(text)
    assert len(errors) == 1 and str(exp) in errors[0], errors
    assert snapshot(tmp_path / 'experiments') == before
    assert not list(exp.glob('.saving_*'))


def test_auto_resume_with_every_state_corrupt_lists_them_and_start_fresh_is_explicit(tmp_path, monkeypatch, data):
    """It used to skip every state with a warning, archive the experiment and start from iteration 0."""
    from agile_ir_plugin.cli.train import main
    monkeypatch.chdir(tmp_path)
    opt = str(dump_yaml(tiny_sr_options(data, 'corrupt', 3), tmp_path / 'opt.yml'))
    assert main(['-opt', opt]) == 0
    exp = tmp_path / 'experiments' / 'corrupt'
    for it in (1, 2):
        state = exp / 'training_states' / f'{it}.state'
        state.write_bytes(state.read_bytes()[:200])
    (exp / 'models' / 'net_g_3.pth').unlink()  # 3.state is fine, its weights are gone
    before = snapshot(tmp_path / 'experiments')

    with pytest.raises(SystemExit) as exc:
        main(['-opt', opt, '--auto_resume'])
    lines = exc.value.code.splitlines()
    assert lines[0].startswith('error: --auto_resume: none of the 3 training state(s) in ')
    assert '--start_fresh' in lines[0]
    assert len(error_lines(exc.value.code)) == 1
    assert lines[1].lower().startswith('  3.state: checkpoint not found: ') and lines[1].endswith('net_g_3.pth')
    assert lines[2].startswith('  2.state: ') and 'truncated or corrupt' in lines[2]
    assert lines[3].startswith('  1.state: ') and 'truncated or corrupt' in lines[3]
    assert snapshot(tmp_path / 'experiments') == before  # nothing archived, nothing written

    assert main(['-opt', opt, '--auto_resume', '--start_fresh']) == 0
    archived = [p for p in (tmp_path / 'experiments').iterdir() if p.name.startswith('corrupt_archived_')]
    assert len(archived) == 1 and (archived[0] / 'training_states' / '2.state').read_bytes() == \
        before[os.path.join('corrupt', 'training_states', '2.state')]
    state = load_checkpoint(exp / 'training_states' / '3.state')
    assert state['iter'] == 3 and (exp / 'models' / 'net_g_3.pth').is_file()


def test_sigterm_in_the_first_second_after_launch_exits_zero_with_one_line(tmp_path, data):
    """The handler used to be installed only once the trainer started: exit code 143 (-15)."""
    opt = dump_yaml(tiny_sr_options(data, 'early', 2), tmp_path / 'opt.yml')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / 'tools' / 'train.py'), '-opt', str(opt)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out + err)[-3000:]
    lines = [line for line in (out + err).splitlines() if line.strip() and not line.startswith('INFO ')]
    assert lines == ['SIGTERM before training started: nothing was written; exiting.'], (out + err)[-3000:]
    assert not (tmp_path / 'experiments').exists()
