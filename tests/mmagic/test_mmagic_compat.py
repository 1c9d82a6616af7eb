"""Each MMagic compat fix of agile_ir_plugin.compat: the original failure in a fresh interpreter
without it, the same code working with it, each recorded once in FIXES.

Two interpreters serve all the tests (module fixtures): one without any fix, one that applies
the fixes one at a time, each right before the code that needs it."""
import json

import pytest

from mmagic_helpers import last_line, requires_mmagic, run_python

pytestmark = [pytest.mark.mmagic, requires_mmagic]

# An mmengine-style checkpoint (the MessageHub state: HistoryBuffer of numpy arrays, a numpy
# scalar), as Runner.save_checkpoint writes it; plus a foreign pickle and plain weights.
_WRITE_CHECKPOINTS = '''
import argparse, json, pickle
import numpy as np
import torch
from mmengine.logging import MessageHub
hub = MessageHub.get_instance('compat_test')
hub.update_scalar('train/loss', 0.25)
hub.update_info('best_score', np.float32(31.5))
torch.save({'meta': {'iter': 20}, 'state_dict': {'w': torch.ones(2)}, 'message_hub': hub.state_dict()},
           'mmengine.pth')
torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': argparse.Namespace(a=1)}, 'foreign.pth')
torch.save({'state_dict': {'w': torch.full((2,), 3.)}}, 'weights.pth')
out = {}
'''

_WITHOUT = _WRITE_CHECKPOINTS + '''
def attempt(name, code):
    try:
        exec(code, {})
        out[name] = 'ok'
    except BaseException as err:
        out[name] = f'{type(err).__name__}: {err}'

attempt('numpy_bool8', 'import mmagic.utils')
attempt('mmcv_ext_placeholder', 'import mmcv.ops')
attempt('mmengine_checkpoint_weights_only',
        'from mmengine.runner.checkpoint import _load_checkpoint; _load_checkpoint("mmengine.pth")')
print(json.dumps(out))
'''

_WITH = _WRITE_CHECKPOINTS + '''
from agile_ir_plugin import compat

# M1 alone makes mmagic.utils importable
compat.fix_numpy_bool8(); compat.fix_numpy_bool8()
import mmagic.utils
out['bool8_is_bool_'] = np.bool8 is np.bool_

# M2: mmcv.ops imports; mmengine still sees mmcv-lite; a compiled op fails when called
compat.fix_mmcv_ext(); compat.fix_mmcv_ext()
import mmcv.ops
from mmengine.utils.dl_utils import mmcv_full_available
out['mmcv_full_available'] = mmcv_full_available()
try:
    mmcv.ops.nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5)
    out['nms'] = 'ran'
except RuntimeError as err:
    out['nms'] = str(err)

# M3: mmengine's own checkpoint loads, plain weights too, a foreign pickle is still refused
compat.fix_mmengine_torch_load(); compat.fix_mmengine_torch_load()
from mmengine.runner.checkpoint import _load_checkpoint
ckpt = _load_checkpoint('mmengine.pth')
out['loss'] = ckpt['message_hub']['log_scalars']['train/loss'].current()
out['best_score'] = float(ckpt['message_hub']['runtime_info']['best_score'])
out['weights'] = _load_checkpoint('weights.pth')['state_dict']['w'].tolist()
try:
    _load_checkpoint('foreign.pth')
    out['foreign'] = 'loaded'
except pickle.UnpicklingError as err:
    out['foreign'] = str(err)

# M4: MMagic's inferencers import (controlnet_aux without mediapipe.solutions); mediapipe itself untouched
compat.fix_controlnet_aux_mediapipe(); compat.fix_controlnet_aux_mediapipe()
import sys
from mmagic.apis import MMagicInferencer
out['mediapipe_kept'] = sys.modules.get('mediapipe', 'absent') is not None

# all of them: once each, idempotent, and every MMagic editor imports
before = list(compat.FIXES)
compat.apply_mmagic_fixes()
out['idempotent'] = compat.FIXES == before
out['fixes'] = list(compat.FIXES)
from mmagic.utils import register_all_modules
register_all_modules()
out['registered'] = True
print(json.dumps(out))
'''


def _numpy_has_bool8():
    import numpy as np
    return hasattr(np, 'bool8')


def _full_mmcv():
    import importlib.util
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except ImportError:
        return False


def _torch_load_weights_only_by_default():
    import argparse
    import io
    import pickle

    import torch
    buffer = io.BytesIO()
    torch.save(argparse.Namespace(a=1), buffer)
    buffer.seek(0)
    try:
        torch.load(buffer)
    except pickle.UnpicklingError:
        return True
    return False


def _controlnet_aux_breaks_on_mediapipe():
    import importlib.util

    from agile_ir_plugin.compat import _mediapipe_lacks_solutions
    return importlib.util.find_spec('controlnet_aux') is not None and _mediapipe_lacks_solutions()


NEEDED = {'numpy_bool8': not _numpy_has_bool8(), 'mmcv_ext_placeholder': not _full_mmcv(),
          'mmengine_checkpoint_weights_only': _torch_load_weights_only_by_default(),
          'controlnet_aux_without_mediapipe_solutions': _controlnet_aux_breaks_on_mediapipe()}


@pytest.fixture(scope='module')
def without(tmp_path_factory):
    proc = run_python(_WITHOUT, cwd=tmp_path_factory.mktemp('without'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(last_line(proc))


@pytest.fixture(scope='module')
def fixed(tmp_path_factory):
    proc = run_python(_WITH, cwd=tmp_path_factory.mktemp('with'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(last_line(proc))


@pytest.mark.skipif(not NEEDED['numpy_bool8'], reason='numpy < 2 still has np.bool8: nothing to fix')
def test_numpy_bool8_alias(without, fixed):
    assert "AttributeError: module 'numpy' has no attribute 'bool8'" in without['numpy_bool8']
    assert fixed['bool8_is_bool_'] is True
    assert fixed['fixes'].count('numpy_bool8') == 1


@pytest.mark.skipif(not NEEDED['mmcv_ext_placeholder'], reason='full mmcv (compiled ops) installed')
def test_mmcv_ext_placeholder(without, fixed):
    assert "ModuleNotFoundError: No module named 'mmcv._ext'" in without['mmcv_ext_placeholder']
    assert fixed['mmcv_full_available'] is False  # mmengine keeps its pure-torch paths
    assert 'nms' in fixed['nms'] and 'mmcv-lite' in fixed['nms']
    assert fixed['fixes'].count('mmcv_ext_placeholder') == 1


@pytest.mark.skipif(not NEEDED['mmengine_checkpoint_weights_only'], reason='torch.load unpickles in full')
def test_mmengine_checkpoint_loads_on_weights_only_torch(without, fixed):
    err = without['mmengine_checkpoint_weights_only']
    assert err.startswith('UnpicklingError: Weights only load failed')
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in err
    assert fixed['loss'] == 0.25 and fixed['best_score'] == 31.5
    assert fixed['weights'] == [3., 3.]
    assert 'argparse.Namespace' in fixed['foreign']  # torch's refusal, unchanged
    assert fixed['fixes'].count('mmengine_checkpoint_weights_only') == 1


def test_apply_mmagic_fixes_once_and_idempotent(fixed):
    from agile_ir_plugin.compat import MMAGIC_FIXES
    assert fixed['idempotent'] is True
    assert fixed['registered'] is True  # register_all_modules(): every MMagic editor imports
    applied = [name for name in fixed['fixes'] if name in MMAGIC_FIXES]
    assert applied == [name for name in MMAGIC_FIXES if NEEDED[name]]
