"""tools/benchmarks/quality.py: a CPU dry run at tiny sizes (seconds), its summary against a hand
computation from the per-run results, resuming without retraining, and the degradation of the
restoration proxy against OpenCV's Gaussian blur."""
import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_sr_pairs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
from benchmarks import quality  # noqa: E402


def _args(*argv):
    parser = argparse.ArgumentParser()
    quality.add_arguments(parser)
    return parser.parse_args(argv)


def test_blur_is_opencv_gaussian_blur():
    import cv2
    img = np.random.default_rng(0).random((23, 31, 3))
    ref = cv2.GaussianBlur(img, (quality.BLUR_SIZE, quality.BLUR_SIZE), quality.BLUR_SIGMA,
                           borderType=cv2.BORDER_REFLECT_101)
    out = quality.blur(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)


def test_batches_are_identical_for_every_model_of_a_seed_and_differ_across_seeds():
    data = [(torch.rand(3, 20, 30), torch.rand(3, 20, 30))]
    cfg = dict(batch=3, patch=8, scale=1)
    a, b, c = (next(quality.batches(data, 'restormer', cfg, s)) for s in (0, 0, 1))
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and not torch.equal(a[0], c[0])
    assert torch.equal(a[0], a[0].mul(255).round().div(255))  # 8-bit noisy input


def test_dry_run_writes_runs_summary_and_plot_then_resumes(tmp_path, monkeypatch):
    train = write_sr_pairs(tmp_path / 'train', 2, n=2, size=(48, 64), seed=1) / 'HR'
    eval_root = tmp_path / 'bench'
    write_sr_pairs(eval_root / 'Set5', 2, n=2, size=(32, 40), seed=2)
    out = tmp_path / 'out'
    argv = ['--seeds', '0', '1', '--jobs', '1', '--iters', '2', '--batch', '2', '--patch', '16',
            '--train-dirs', str(train), '--eval-root', str(eval_root), '--sets', 'Set5',
            '--eval-crop', '16', '--cache-dir', str(tmp_path / 'cache'), '--device', 'cpu', '--out-dir', str(out)]
    assert quality.main(_args(*argv)) == 0
    runs = json.loads((out / 'quality_runs.json').read_text())['runs']
    models = [m for p in quality.PAIRS.values() for m in p['models']]
    assert len(runs) == 2 * len(models)
    doc = json.loads((out / 'quality.json').read_text())
    for row in doc['rows']:
        ref = quality.PAIRS[row['pair']]['reference']
        if row['model'] == ref:
            assert 'diff_mean' not in row
            continue
        diffs = [runs[quality.run_key(row['pair'], row['model'], s)]['scores']['Set5']['psnr']
                 - runs[quality.run_key(row['pair'], ref, s)]['scores']['Set5']['psnr'] for s in (0, 1)]
        assert row['diff_mean'] == pytest.approx(statistics.mean(diffs))
        assert row['diff_std'] == pytest.approx(statistics.stdev(diffs))
    # the restoration baseline is the degraded input scored against the clean image
    base = doc['meta']['baselines']['restormer']['Set5']['psnr']
    from basicsr.metrics import calculate_psnr
    from agile_ir_plugin.evaluation.datasets import read_image
    cache = next((tmp_path / 'cache').iterdir()) / 'Set5' / 'degraded'
    psnrs = [calculate_psnr(read_image(cache / p.name)[0], read_image(p)[0][8:24, 12:28], 0, test_y_channel=True)
             for p in sorted((eval_root / 'Set5' / 'HR').iterdir())]  # 32x40 images, central 16x16
    assert base == pytest.approx(statistics.mean(psnrs))
    assert (out / 'quality.png').stat().st_size > 0 and 'over 2 seeds' in (out / 'quality.md').read_text()

    # a re-run with the same configuration trains nothing; another configuration retrains
    def no_training(job):
        raise AssertionError(f'retrained {job["model"]} seed {job["seed"]}')
    monkeypatch.setattr(quality, 'run_job', no_training)
    assert quality.main(_args(*argv)) == 0
    with pytest.raises(AssertionError, match='retrained'):
        quality.main(_args(*argv[:6], '3', *argv[7:]))


def test_missing_training_folder_fails_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match='no training images'):
        (tmp_path / 'empty').mkdir()
        quality.main(_args('--train-dirs', str(tmp_path / 'empty'), '--out-dir', str(tmp_path / 'o')))
    assert not (tmp_path / 'o' / 'quality_runs.json').exists()
