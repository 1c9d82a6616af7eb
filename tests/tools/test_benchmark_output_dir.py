"""Issue #15 item 6: benchmarks write into ./benchmark_results/, never into the tracked
docs/benchmarks/ unless asked with ``tools/benchmark.py --update-docs``."""
import json
import subprocess
import sys

from conftest import REPO_ROOT

SNIPPET = '''
import json, sys
sys.path.insert(0, {tools!r})
import benchmark
try:
    benchmark.main({argv!r} + ['--help'])
except SystemExit:
    pass
from benchmarks import _common
paths = []
if {write!r}:
    meta = {{'command': 'test', 'device': 'cpu', 'torch': '-', 'python': '-', 'date': '-'}}
    paths = [str(p) for p in _common.write_results('probe', meta, [{{'x': 1}}], 'probe')]
print(json.dumps({{'out_dir': str(_common.OUT_DIR), 'paths': paths}}))
'''


def _run(tmp_path, argv, write=False):
    code = SNIPPET.format(tools=str(REPO_ROOT / 'tools'), argv=argv, write=write)
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_results_go_outside_the_tracked_docs_by_default(tmp_path):
    docs = REPO_ROOT / 'docs' / 'benchmarks'
    before = sorted(p.name for p in docs.iterdir())
    got = _run(tmp_path, [], write=True)
    assert got['out_dir'] == str(tmp_path / 'benchmark_results')
    assert sorted(got['paths']) == sorted(str(tmp_path / 'benchmark_results' / f'probe.{e}') for e in ('json', 'md'))
    assert sorted(p.name for p in docs.iterdir()) == before  # nothing written into the checkout


def test_update_docs_targets_docs_benchmarks(tmp_path):
    got = _run(tmp_path, ['--update-docs'])  # no write: only where it would go
    assert got['out_dir'] == str(REPO_ROOT / 'docs' / 'benchmarks')
