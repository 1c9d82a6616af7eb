"""tools/benchmarks/hosts.py (ours vs the official Restormer / MST++): the script runs end to end
and its import errors say what to pass or install.  The official code is not available here: a
stand-in file re-exporting our class plays it."""
import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
from benchmarks import hosts  # noqa: E402


def _args(*argv):
    parser = argparse.ArgumentParser()
    hosts.add_arguments(parser)
    return parser.parse_args(argv)


def test_missing_official_code_gives_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match='--official-restormer PATH and/or --official-mstpp PATH'):
        hosts.main(_args())
    with pytest.raises(SystemExit, match=r'--official-mstpp: no official MST\+\+ file .*caiyuanhao1998/MST-plus-plus'):
        hosts.main(_args('--official-mstpp', str(tmp_path)))
    (tmp_path / 'restormer_arch.py').write_text('import einops_missing_for_this_test\n')
    with pytest.raises(SystemExit, match='pip install einops_missing_for_this_test'):
        hosts.main(_args('--official-restormer', str(tmp_path / 'restormer_arch.py')))


def test_runs_end_to_end_and_writes_ratios(tmp_path):
    checkout = tmp_path / 'MST-plus-plus'
    official = checkout / 'train_code' / 'architecture' / 'MST_Plus_Plus.py'
    official.parent.mkdir(parents=True)
    official.write_text('from agile_ir_plugin.archs import MSTPlusPlus as MST_Plus_Plus  # stand-in\n')
    out = tmp_path / 'out'
    assert hosts.main(_args('--official-mstpp', str(checkout), '--mst-size', '16', '--mst-train-size', '8',
                            '--repeats', '1', '--out', 'h', '--out-dir', str(out))) == 0
    doc = json.loads((out / 'h.json').read_text())
    ratio = next(r for r in doc['rows'] if r['section'] == 'ratio')
    assert ratio['host'] == 'MST++' and ratio['max_abs_output_diff'] == 0 and ratio['max_abs_input_grad_diff'] == 0
    assert ratio['infer_input'] == [1, 3, 16, 16] and ratio['train_input'] == [1, 3, 8, 8]
    assert ratio['infer_speedup'] > 0 and ratio['memory_saving'] == 1
    assert doc['meta']['official']['MST++']['sha256']
    assert '## MST++' in (out / 'h.md').read_text()
