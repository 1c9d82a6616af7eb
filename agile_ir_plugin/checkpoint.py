"""Loading checkpoints safely, with one clear message per failure (pure torch).

``.pth``/``.state`` files are pickles; loading a stranger's pickle can run code.  Everything the
plugin writes is plain tensors, numbers, strings, lists and dicts, so it loads with
``weights_only=True``.  A legacy pickle is refused with the name of the switch that allows it
for files you trust: ``allow_pickle=True`` or the environment variable ``AGILE_IR_ALLOW_PICKLE=1``.
"""
import os
import pickle
import zipfile

import torch

ALLOW_PICKLE_ENV = 'AGILE_IR_ALLOW_PICKLE'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def _first_line(err, limit):
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else 'empty message'


def load_checkpoint(path, map_location='cpu', allow_pickle=None):
    """``torch.load`` with ``weights_only=True`` and actionable errors.

    Raises CheckpointError for a missing, truncated/corrupt or legacy-pickle file."""
    path = os.fspath(path)
    if allow_pickle is None:
        allow_pickle = os.environ.get(ALLOW_PICKLE_ENV, '') not in ('', '0')
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        if 'GLOBAL' not in str(err) and 'safe_globals' not in str(err):  # refused bytes, not a refused class
            raise CheckpointError(f'{path} is truncated or corrupt and cannot be loaded '
                                  f'(UnpicklingError: {_first_line(err, 160)}).') from None
        raise CheckpointError(
            f'{path} is a legacy pickle checkpoint that does not load with weights_only=True '
            f'({_first_line(err, 120)}). Loading it can run arbitrary code: only if you trust the file, '
            f'set {ALLOW_PICKLE_ENV}=1 (or pass allow_pickle=True).') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f'{path} is truncated or corrupt and cannot be loaded ({type(err).__name__}: '
                              f'{_first_line(err, 160)}).') from None
