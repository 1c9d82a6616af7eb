"""tools/benchmarks/_common.py: a benchmark run is compared with the previous one (issue 9:
"nothing slowed down versus the previous benchmark run")."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
from benchmarks._common import compare_runs, write_results  # noqa: E402

META = {'command': 'python tools/benchmark.py x', 'device': 'CPU test (2 cores, 1 threads)', 'torch': '2',
        'python': '3', 'date': '2026-11-20', 'threads': 1}


def _doc(train_s, mem, meta=META):
    return {'meta': dict(meta), 'rows': [
        {'model': 'A', 'batch': 2, 'params': 10, 'train_seconds': train_s, 'saved_bytes': mem, 'speedup': 2.0},
        {'model': 'B', 'batch': 2, 'params': 20, 'train_seconds': 1.0, 'saved_bytes': 100},
        {'model': 'A', 'batch': 4, 'params': 10, 'train_seconds': 3.0, 'saved_bytes': 400}]}


def test_rows_are_matched_by_configuration_and_ratios_are_exact():
    result = compare_runs(_doc(2.0, 200), _doc(2.5, 200))
    by = {(f['key']['model'], f['key']['batch'], f['field']): f for f in result['fields']}
    assert set(by) == {(m, b, f) for m, b in (('A', 2), ('B', 2), ('A', 4)) for f in ('train_seconds', 'saved_bytes')}
    assert by[('A', 2, 'train_seconds')]['ratio'] == pytest.approx(1.25)
    assert by[('B', 2, 'train_seconds')]['ratio'] == pytest.approx(1.0)
    # 'params' and 'speedup' are not timings or memory: never compared
    assert all(f['field'] in ('train_seconds', 'saved_bytes') for f in result['fields'])
    assert [(f['key']['model'], f['field']) for f in result['slower']] == [('A', 'train_seconds')]
    assert result['comparable']


def test_within_tolerance_and_faster_are_not_flagged_but_memory_growth_is():
    assert compare_runs(_doc(2.0, 200), _doc(2.19, 200))['slower'] == []
    assert compare_runs(_doc(2.0, 200), _doc(1.0, 200))['slower'] == []
    grown = compare_runs(_doc(2.0, 200), _doc(2.0, 201))['slower']
    assert [(f['field'], f['old'], f['new']) for f in grown] == [('saved_bytes', 200, 201)]


def test_other_device_or_threads_is_not_comparable():
    other = dict(META, threads=2)
    result = compare_runs(_doc(2.0, 200), _doc(2.0, 200, other))
    assert not result['comparable'] and 'threads: 1 then, 2 now' in result['reason']


def test_write_results_appends_the_comparison_and_keeps_the_first_run_plain(tmp_path):
    write_results('fam', META, _doc(2.0, 200)['rows'], '# Fam\n', out_dir=tmp_path)
    first = (tmp_path / 'fam.md').read_text()
    assert 'Versus the previous run' not in first and 'vs_previous' not in json.loads((tmp_path / 'fam.json').read_text())
    write_results('fam', dict(META, date='2026-11-21'), _doc(3.0, 200)['rows'], '# Fam\n', out_dir=tmp_path)
    md = (tmp_path / 'fam.md').read_text()
    assert '## Versus the previous run' in md and 'Previous: 2026-11-20' in md
    assert '**1 figure(s) slower by more than 10%' in md and '| A, batch 2 | train_seconds | 2 | 3 | 1.50 |' in md
    doc = json.loads((tmp_path / 'fam.json').read_text())
    assert doc['vs_previous']['slower'][0]['ratio'] == pytest.approx(1.5)
    assert doc['rows'][0]['train_seconds'] == 3.0
