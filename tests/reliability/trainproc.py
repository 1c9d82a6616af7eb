"""Training runs as real, killable processes without paying the interpreter start-up each time.

A fork server (one ``python`` subprocess) imports torch, BasicSR and the plugin once; every run
is ``os.fork()`` of it executing ``tools/train.py``'s ``main(argv)`` in its own process, with its
own working directory, environment and log file, and the exit code a real interpreter would give
(``SystemExit`` semantics).  The test can SIGKILL / SIGTERM that process by pid.  On this 2-core
machine an interpreter start costs 5-20 s, a fork a few milliseconds, which is what makes a
dozen kills affordable.  The server itself runs no torch op before forking (an OpenMP pool must
not be forked)."""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

_SERVER = r'''
import json, os, sys, traceback
sys.path.insert(0, os.path.join(sys.argv[1], 'tools'))
import agile_ir_plugin  # noqa: F401
from basicsr.models import build_model  # noqa: F401  (the imports a run needs)
from agile_ir_plugin.basicsr import loop  # noqa: F401
from agile_ir_plugin.cli import train as train_tool

def private_mounts(mounts):
    """Enter a private mount namespace (this process only) and run ``mount`` with each argument list."""
    import ctypes, subprocess
    if ctypes.CDLL(None, use_errno=True).unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), 'unshare(CLONE_NEWNS) failed')
    subprocess.run(['mount', '--make-rprivate', '/'], check=True)
    for args in mounts:
        subprocess.run(['mount', *args], check=True)

def reply(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()

reply({'ready': True})
for line in sys.stdin:
    req = json.loads(line)
    if req['op'] == 'start':
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(req['log'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                if req.get('mounts'):
                    private_mounts(req['mounts'])
                os.chdir(req['cwd'])
                os.environ.update(req['env'])
                try:
                    code = train_tool.main(req['argv']) or 0
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:
                        sys.stderr.write(f'{exc.code}\n')
                        code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        reply({'pid': pid})
    elif req['op'] == 'wait':
        _, status = os.waitpid(req['pid'], 0)
        reply({'code': os.waitstatus_to_exitcode(status)})
'''


class Run:
    def __init__(self, server, pid, log):
        self.server, self.pid, self.log = server, pid, Path(log)
        self.code = None

    def text(self):
        return self.log.read_text(errors='replace') if self.log.exists() else ''

    def alive(self):
        """Running (not yet exited; an exited child is a zombie until waited for)."""
        try:
            with open(f'/proc/{self.pid}/stat') as f:
                return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
        except FileNotFoundError:
            return False

    def wait_for(self, pattern, timeout=120):
        """Wait until the log matches ``pattern``; returns the match (None if the run ended first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if not self.alive():
                return re.search(pattern, self.text())
            time.sleep(0.02)
        raise TimeoutError(f'{pattern!r} not in the log of pid {self.pid} after {timeout} s:\n{self.text()[-3000:]}')

    def kill(self, sig=signal.SIGKILL):
        os.kill(self.pid, sig)

    def wait(self, timeout=300):
        if self.code is None:
            self.code = self.server.wait(self.pid, timeout)
        return self.code


class TrainServer:
    def __init__(self):
        env = dict(os.environ)
        env.setdefault('OMP_NUM_THREADS', '2')
        env['PYTHONUNBUFFERED'] = '1'
        self.proc = subprocess.Popen([sys.executable, '-c', _SERVER, str(REPO_ROOT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
        self._read(300)

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f'fork server gave no answer in {timeout} s')
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'fork server died (exit code {self.proc.poll()})')
        return json.loads(line)

    def _send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + '\n')
        self.proc.stdin.flush()

    def start(self, argv, cwd, log, env=None, mounts=None):
        """Fork a run; ``mounts``: ``mount`` argument lists applied in a private mount namespace of the
        run only (needs root), e.g. ``['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', folder]``."""
        self._send({'op': 'start', 'argv': [str(a) for a in argv], 'cwd': str(cwd), 'log': str(log),
                    'env': {k: str(v) for k, v in (env or {}).items()},
                    'mounts': [[str(a) for a in m] for m in (mounts or [])]})
        return Run(self, self._read(60)['pid'], log)

    def wait(self, pid, timeout):
        self._send({'op': 'wait', 'pid': pid})
        try:
            return self._read(timeout)['code']
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._read(60)
            raise

    def run(self, argv, cwd, log, env=None, timeout=300, mounts=None):
        run = self.start(argv, cwd, log, env, mounts)
        run.wait(timeout)
        return run

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope='module')
def server():
    """One fork server per test module (import this fixture into the module)."""
    srv = TrainServer()
    yield srv
    srv.close()


def tiny_sr_options(data_root, name, total_iter, save_freq=1, batch=2):
    """A BasicSR SRModel run of a tiny SwinIR (drop-path on, EMA, warm-up, multi-step LR: every
    piece of state an exact resume must restore) on ``write_sr_pairs(root, 4, n=3, size=(64, 64))``
    data: 3 images x enlarge 4 / batch 2 = 6 iterations per epoch."""
    return {
        'name': name, 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 11,
        'datasets': {
            'train': {'name': 'tiny', 'type': 'PairedImageDataset', 'dataroot_gt': str(Path(data_root) / 'HR'),
                      'dataroot_lq': str(Path(data_root) / 'LR_bicubic' / 'X4'), 'filename_tmpl': '{}x4',
                      'io_backend': {'type': 'disk'}, 'gt_size': 32, 'use_hflip': True, 'use_rot': True,
                      'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch, 'dataset_enlarge_ratio': 4,
                      'prefetch_mode': None},
        },
        'network_g': {'type': 'SwinIR', 'upscale': 4, 'in_chans': 3, 'img_size': 8, 'window_size': 4,
                      'img_range': 1.0, 'depths': [2], 'embed_dim': 8, 'num_heads': [2], 'mlp_ratio': 2,
                      'upsampler': 'pixelshuffledirect', 'resi_connection': '1conv', 'drop_path_rate': 0.5},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.9,
                  'optim_g': {'type': 'AdamW', 'lr': 2e-3, 'weight_decay': 1e-4, 'betas': [0.9, 0.9]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [5, 10], 'gamma': 0.5},
                  'total_iter': total_iter, 'warmup_iter': 2,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': save_freq, 'use_tb_logger': False},
    }


def load_weights(path):
    import torch
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_weights(a, b, what=''):
    import torch
    assert a.keys() == b.keys(), what
    for key in a:  # params and params_ema
        assert a[key].keys() == b[key].keys(), what
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f'{what}: {key}.{name} differs'
