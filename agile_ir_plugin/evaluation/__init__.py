"""Leaderboard evaluation of any SR model: quality on benchmark sets plus efficiency.

``agile_ir_plugin.evaluate(model, datasets=['Set5', 'Set14', 'B100'], scale=4, root=DIR)`` returns
one row per dataset x scale (PSNR/SSIM on Y with BasicSR's MATLAB-compatible functions, optional
RGB variants and LPIPS, optional params/MACs/latency/memory); ``tools/leaderboard.py`` is the
command-line front end writing Markdown, CSV and JSON.  ``evaluate_spectral`` gives the
MRAE / RMSE / PSNR row of a spectral-reconstruction model (NTIRE 2022 conventions).  Conventions: docs/evaluation.md.
Uses BasicSR (metrics, MATLAB ``imresize``); never MMagic.
"""
from .api import DEFAULT_DATASETS, build_named_model, evaluate
from .bicubic import MatlabBicubic, generate_lr, resampling_matrix
from .datasets import Dataset, load_pair, resolve_dataset
from .efficiency import LiveTensorBytes, measure
from .inference import Predictor, pad_multiple_of, padded_forward, self_ensemble, tiled_forward
from .loading import build_model, load_weights
from .metrics import LPIPSMetric, quality
from .report import write_report
from .spectral import evaluate_spectral

__all__ = [
    'evaluate', 'DEFAULT_DATASETS', 'build_named_model', 'MatlabBicubic', 'generate_lr', 'resampling_matrix',
    'Dataset', 'load_pair', 'resolve_dataset', 'LiveTensorBytes', 'measure', 'Predictor', 'pad_multiple_of',
    'padded_forward', 'self_ensemble', 'tiled_forward', 'build_model', 'load_weights', 'LPIPSMetric', 'quality',
    'write_report', 'evaluate_spectral',
]
