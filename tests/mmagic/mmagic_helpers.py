"""Shared by tests/mmagic: is the [mmagic] extra installed, and a fresh interpreter to run code in.

Everything that imports MMagic runs in a subprocess: the compat fixes and MMagic's imports stay
out of the pytest process (other tests must not see them), and each fix can be checked against
a clean interpreter."""
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def mmagic_installed():
    # origin is None for a namespace package, e.g. this tests/mmagic folder seen through sys.path
    spec = importlib.util.find_spec('mmagic')
    return spec is not None and spec.origin is not None


requires_mmagic = pytest.mark.skipif(
    not mmagic_installed(), reason='needs the [mmagic] extra: pip install -c constraints.txt -e ".[mmagic]"')


def run_python(code, cwd=None, timeout=300):
    """Run ``code`` in a fresh interpreter (cwd: a temporary folder, never tests/); return it."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '2')
    env['PYTHONWARNINGS'] = 'ignore'
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def last_line(proc):
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ''
