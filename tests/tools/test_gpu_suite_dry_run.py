"""The GPU suite (``python tools/benchmark.py gpu``) on CPU at tiny sizes (``--dry-run``), so that
it cannot rot: every section runs, its rows say which attention backend really ran, the backends'
outputs agree with naive attention, AgileIR keeps less than SwinIR-light, and the report carries
the issue's GPU targets marked as not measured.  The official ESC code is not available here: a
stand-in file re-exporting our ESC plays it (as in test_benchmark_hosts.py)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
import benchmark  # noqa: E402


def run_suite(tmp_path, *argv):
    assert benchmark.main(['gpu', '--dry-run', '--out-dir', str(tmp_path), *argv]) == 0
    doc = json.loads((tmp_path / 'gpu_dryrun.json').read_text())
    return doc['rows'], (tmp_path / 'gpu_dryrun.md').read_text()


def test_dry_run_models_sections(tmp_path):
    official = tmp_path / 'official' / 'esc_arch.py'
    official.parent.mkdir()
    official.write_text('from agile_ir_plugin.archs.esc_arch import ESC  # stand-in for the official file\n')
    rows, md = run_suite(tmp_path, '--sections', 'esc', 'agileir', 'hosts', '--official', str(official))
    esc = [r for r in rows if r['section'] == 'esc']
    assert {r['implementation'] for r in esc} == {'ours flex', 'ours sdpa', 'ours naive', 'official Flex'}
    assert all('error' not in r for r in esc), [r.get('error') for r in esc]
    for r in esc:  # the same function through every backend
        assert r['max_abs_diff_vs_naive'] <= (1e-4 if r['dtype'] == 'fp32' else 0.1), r
    flex_fp32 = next(r for r in esc if r['implementation'] == 'ours flex' and r['dtype'] == 'fp32')
    # honest rows: FlexAttention has no CPU backward, so its training step ran chunked attention
    assert flex_fp32['train_backend'] == 'chunked' and flex_fp32['infer_backend'] == 'flex'
    agile = {(r['model'], r['batch']): r for r in rows if r['section'] == 'agileir'}
    for batch in (1, 2):
        assert agile['AgileIR', batch]['train_memory_bytes'] < agile['SwinIR-light', batch]['train_memory_bytes']
    hosts = {r['model'] for r in rows if r['section'] == 'hosts'}
    assert hosts == {'Restormer (mdta)', 'Restormer + GLMHA', 'MST++ (smsa)', 'MST++ + GLMHA'}
    assert '## Targets (issue 16)' in md
    for target in ('official Flex', '1280x720', 'AgileIR peak training memory', 'Restormer + GLMHA', 'MST++ + GLMHA'):
        assert f'{target}' in md
    assert md.count('dry run (CPU, tiny sizes): not a measurement') == 5


@pytest.mark.slow
def test_dry_run_tests_compile_ddp_sections(tmp_path):
    rows, md = run_suite(tmp_path, '--sections', 'tests', 'compile', 'ddp')
    tests = next(r for r in rows if r['section'] == 'tests')
    assert tests['returncode'] == 0 and tests['skipped'] >= 1  # the CUDA tests are collected (and skip on CPU)
    compiled = {r['phase']: r for r in rows if r['section'] == 'compile'}
    assert set(compiled) == {'inference', 'train'} and all(r['compiled_seconds'] > 0 for r in compiled.values())
    ddp = next(r for r in rows if r['section'] == 'ddp')
    assert ddp['backend'] == 'gloo' and ddp['world_size'] == 2 and ddp['grads_equal_across_ranks'] is True


def test_without_cuda_the_suite_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    with pytest.raises(SystemExit, match='error: the GPU suite needs CUDA.*--dry-run'):
        benchmark.main(['gpu', '--out-dir', str(tmp_path)])
    assert not list(tmp_path.iterdir())
