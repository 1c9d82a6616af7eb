"""MMagic 1.2.0 / mmengine 0.10.7 / mmcv-lite 2.1.0 on torch >= 2.6 and numpy 2: the fixes
``agile_ir_plugin.mmagic`` applies before the first ``import mmagic``.  Tests:
``tests/mmagic/test_mmagic_compat.py``."""
import importlib.util
import sys
import types

from . import _once


# ---------------------------------------------------------------------------------------------
# M1. numpy 2 removed the alias np.bool8 (of np.bool_).
#     Prevents: AttributeError: module 'numpy' has no attribute 'bool8'
#     (mmagic/utils/trans_utils.py, a module-level dict, on `import mmagic.utils` -- and so on
#     every MMagic config).
# ---------------------------------------------------------------------------------------------
def fix_numpy_bool8():
    import numpy as np
    if hasattr(np, 'bool8') or not _once('numpy_bool8'):
        return
    np.bool8 = np.bool_


# ---------------------------------------------------------------------------------------------
# M2. mmcv-lite has no compiled ops (mmcv._ext), full mmcv does not build against today's torch,
#     and MMagic imports mmcv.ops at module level for a few editors (BasicVSR++, EDVR, ...), which
#     `mmagic.models` -- the registry's import location -- imports all at once.
#     Prevents: ModuleNotFoundError: No module named 'mmcv._ext'
#     (mmcv/ops/active_rotated_filter.py via mmcv.utils.ext_loader.load_ext).
#     The placeholder has every function mmcv.ops asks for; calling one raises a clear error, so
#     only the editors that really use compiled ops fail, and only when run.  Its spec has no
#     loader, so mmengine.utils.dl_utils.mmcv_full_available() (pkgutil.find_loader) still says
#     False and mmengine keeps its pure-torch code paths.
# ---------------------------------------------------------------------------------------------
class _MissingMMCVOp:
    def __init__(self, name):
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f'mmcv.ops `{self.__name__}` needs the compiled ops of full mmcv (mmcv._ext), '
                           'which mmcv-lite does not ship; the archs of agile_ir_plugin do not use them.')


def _missing_op(name):
    if name.startswith('__'):
        raise AttributeError(name)
    return _MissingMMCVOp(name)


def fix_mmcv_ext():
    name = 'mmcv._ext'
    if name in sys.modules:
        return
    try:
        if importlib.util.find_spec('mmcv') is None or importlib.util.find_spec(name) is not None:
            return  # no mmcv, or full mmcv with its compiled ops
    except (ImportError, ValueError):
        return
    if not _once('mmcv_ext_placeholder'):
        return
    from importlib.machinery import ModuleSpec
    module = types.ModuleType(name, 'agile_ir_plugin.compat placeholder for the compiled ops of full mmcv.')
    module.__spec__ = ModuleSpec(name, loader=None)
    module.__getattr__ = _missing_op
    sys.modules[name] = module


# ---------------------------------------------------------------------------------------------
# M3. torch >= 2.6 loads with weights_only=True by default, and mmengine 0.10.7 calls
#     torch.load(filename, map_location) for every local checkpoint -- its own included, which
#     pickle the training state (mmengine.logging.HistoryBuffer with numpy arrays and the
#     getattr'ed statistics methods it keeps).
#     Prevents: _pickle.UnpicklingError: Weights only load failed ... Unsupported global: GLOBAL
#     mmengine.logging.history_buffer.HistoryBuffer was not an allowed global by default
#     (Runner.resume, i.e. `--resume`, and tools/test.py on a checkpoint the runner saved).
#     A local file is loaded weights-only first (plain weights, MMagic's released models); only
#     when that fails and the pickle names nothing but the globals of mmengine's own checkpoints
#     (listed without unpickling, torch.serialization.get_unsafe_globals_in_checkpoint) is it
#     loaded in full, as mmengine did before torch 2.6.  That check keeps foreign pickles out by
#     accident; it is not a sandbox: resume only from checkpoints you trust.  Anything else
#     raises torch's own error unchanged.
# ---------------------------------------------------------------------------------------------
MMENGINE_CHECKPOINT_GLOBALS = (
    'mmengine.logging.history_buffer.HistoryBuffer',  # MessageHub.log_scalars
    'builtins.getattr',  # HistoryBuffer._statistics_methods (getattr(HistoryBuffer, 'mean'), ...)
    'numpy.ndarray', 'numpy.dtype',  # HistoryBuffer's arrays, numpy scalars in runtime_info
    'numpy._core.multiarray._reconstruct', 'numpy._core.multiarray.scalar',  # numpy 2
    'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',  # numpy 1
)


def _is_mmengine_checkpoint_pickle(unsafe_globals):
    return all(name in MMENGINE_CHECKPOINT_GLOBALS or name.startswith('numpy.dtypes.')
               for name in unsafe_globals)


def _torch_load_defaults_to_weights_only():
    """Reproduce the failure: does a plain torch.load refuse an mmengine HistoryBuffer?"""
    import io
    import pickle

    import torch
    from mmengine.logging import HistoryBuffer
    buffer = io.BytesIO()
    torch.save({'log_scalars': {'loss': HistoryBuffer([1.0], [1])}}, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, map_location='cpu')
    except pickle.UnpicklingError:
        return True
    return False


def load_mmengine_checkpoint(filename, map_location=None):
    """torch.load for mmengine's local files: weights-only, or in full for mmengine's own."""
    import pickle

    import torch
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        if not _is_mmengine_checkpoint_pickle(unsafe):
            raise
    return torch.load(filename, map_location=map_location, weights_only=False)


def fix_mmengine_torch_load():
    from mmengine.runner import checkpoint as mmengine_checkpoint
    if getattr(mmengine_checkpoint.CheckpointLoader._schemes.get(''), '_agile_ir_plugin', False):
        return
    if not _torch_load_defaults_to_weights_only() or not _once('mmengine_checkpoint_weights_only'):
        return
    original = mmengine_checkpoint.CheckpointLoader._schemes['']

    def load_from_local(filename, map_location):  # the name mmengine prints ("by local backend")
        import os.path as osp
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return load_mmengine_checkpoint(filename, map_location)

    load_from_local._agile_ir_plugin = True
    load_from_local.__wrapped__ = original
    mmengine_checkpoint.CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    mmengine_checkpoint.load_from_local = load_from_local


# ---------------------------------------------------------------------------------------------
# M4. mediapipe >= 0.10.30 has no `mediapipe.solutions`, which controlnet_aux 0.0.10 reads at import
#     (controlnet_aux/mediapipe_face/mediapipe_face_common.py), and `mmagic.apis` imports
#     controlnet_aux for its ControlNet animation inferencer.
#     Prevents: AttributeError: module 'mediapipe' has no attribute 'solutions' on
#     `from mmagic.apis import MMagicInferencer` (and every MMagic inferencer).  No pin fixes it: the
#     mediapipe releases that have `solutions` need numpy < 2.  controlnet_aux guards its own
#     `import mediapipe` (ImportError -> face detector disabled), so it is imported once with mediapipe
#     hidden; mediapipe itself is untouched for everyone else.  Only its MediapipeFaceDetector is lost,
#     which this mediapipe could not run anyway.
# ---------------------------------------------------------------------------------------------
def _mediapipe_lacks_solutions():
    from pathlib import Path
    try:
        spec = importlib.util.find_spec('mediapipe')
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None:
        return False
    return not (Path(spec.origin).parent / 'python' / 'solutions').is_dir()


def fix_controlnet_aux_mediapipe():
    try:
        if 'controlnet_aux' in sys.modules or importlib.util.find_spec('controlnet_aux') is None:
            return
    except (ImportError, ValueError):
        return
    if not _mediapipe_lacks_solutions() or not _once('controlnet_aux_without_mediapipe_solutions'):
        return
    import warnings
    saved = sys.modules.get('mediapipe')
    sys.modules['mediapipe'] = None  # `import mediapipe` raises ImportError inside this block only
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # "The module 'mediapipe' is not installed" and friends
            import controlnet_aux  # noqa: F401
    finally:
        if saved is None:
            del sys.modules['mediapipe']
        else:
            sys.modules['mediapipe'] = saved


MMAGIC_FIXES = ('numpy_bool8', 'mmcv_ext_placeholder', 'mmengine_checkpoint_weights_only',
                'controlnet_aux_without_mediapipe_solutions')  # FIXES names


def apply_mmagic_fixes():
    """Fixes needed before ``import mmagic`` (and its runner); idempotent."""
    fix_numpy_bool8()
    fix_mmcv_ext()
    fix_mmengine_torch_load()
    fix_controlnet_aux_mediapipe()
