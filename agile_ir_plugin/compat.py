"""Every fix that BasicSR 1.4.2 (and, lazily, mmengine / MMagic) needs on today's stack.

Rules: each fix names the exact error it prevents, is chosen by feature detection (never by
version sniffing), is applied once and idempotently, and has a test (``tests/test_compat.py``; the MMagic ones in ``tests/mmagic/test_mmagic_compat.py``)
that reproduces the original failure without it.  Nothing here changes behaviour that works.

``apply_basicsr_fixes()`` runs before the first ``import basicsr`` (``import agile_ir_plugin`` calls
it).  ``FIXES`` lists what was applied, for logs and tests.
"""
import importlib
import importlib.util
import sys
import types

FIXES = []  # names of the fixes applied in this process, in order


def _once(name):
    if name in FIXES:
        return False
    FIXES.append(name)
    return True


# ---------------------------------------------------------------------------------------------
# 1. torchvision >= 0.17 removed torchvision.transforms.functional_tensor.
#    Prevents: ModuleNotFoundError: No module named 'torchvision.transforms.functional_tensor'
#    (raised by basicsr/data/degradations.py on `import basicsr`).
# ---------------------------------------------------------------------------------------------
def fix_functional_tensor():
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        if importlib.util.find_spec(name) is not None:
            return  # old torchvision still ships it
    except ModuleNotFoundError:  # torchvision itself missing: nothing to alias
        return
    if not _once('torchvision_functional_tensor'):
        return
    from torchvision.transforms import functional as tv_functional
    shim = types.ModuleType(name)
    shim.__doc__ = 'agile_ir_plugin.compat alias of torchvision.transforms.functional (removed in 0.17).'
    shim.rgb_to_grayscale = tv_functional.rgb_to_grayscale
    sys.modules[name] = shim
    import torchvision.transforms as tv_transforms
    tv_transforms.functional_tensor = shim


# ---------------------------------------------------------------------------------------------
# 2. basicsr.utils.dist_util.init_dist assumes CUDA + nccl: `_init_dist_pytorch` calls
#    torch.cuda.set_device(rank % torch.cuda.device_count()).
#    Prevents, on a CPU machine under torchrun: ZeroDivisionError: integer modulo by zero
#    (no GPU) -- and, with GPUs on several nodes, picks the device from LOCAL_RANK, not RANK.
#    Backend: nccl when CUDA is available, else gloo; `dist_params: {backend: ...}` in the options
#    overrides it (BasicSR forwards dist_params only for slurm; agile_ir_plugin.basicsr.options passes
#    them for every launcher, as keyword arguments).
# ---------------------------------------------------------------------------------------------


def _needs_dist_fix(dist_util):
    import inspect
    try:
        src = inspect.getsource(dist_util._init_dist_pytorch)
    except (OSError, TypeError, AttributeError):
        return False
    return 'device_count()' in src and 'set_device' in src


def init_dist(launcher, backend=None, **kwargs):
    """Drop-in for BasicSR's ``init_dist`` that works on CPU (gloo) and picks LOCAL_RANK's GPU."""
    import os

    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')  # as BasicSR does: CUDA state must not be forked into workers
    params = dict(kwargs)
    backend = params.pop('backend', None) or backend
    if backend in (None, 'nccl') and not torch.cuda.is_available():
        backend = 'gloo'  # nccl needs CUDA; an explicit non-nccl choice is kept
    port = params.pop('port', None)
    if launcher == 'slurm':
        proc_id = int(os.environ['SLURM_PROCID'])
        ntasks = int(os.environ['SLURM_NTASKS'])
        ngpus = max(torch.cuda.device_count(), 1)
        import subprocess
        addr = subprocess.getoutput(f"scontrol show hostname {os.environ['SLURM_NODELIST']} | head -n1")
        os.environ.setdefault('MASTER_ADDR', addr)
        os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', 29500))
        os.environ.update(WORLD_SIZE=str(ntasks), RANK=str(proc_id),
                          LOCAL_RANK=str(int(os.environ.get('SLURM_LOCALID', proc_id % ngpus))))
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    if backend == 'nccl' or (torch.cuda.is_available() and backend != 'gloo'):
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    dist.init_process_group(backend=backend, **params)


def fix_init_dist():
    from basicsr.utils import dist_util, options
    if not _needs_dist_fix(dist_util) or not _once('init_dist_cpu_gloo'):
        return
    dist_util.init_dist = init_dist
    options.init_dist = init_dist


# ---------------------------------------------------------------------------------------------
# 3. BaseModel.model_to_device wraps DDP with device_ids=[torch.cuda.current_device()].
#    Prevents, for CPU DDP (gloo): RuntimeError: Found no NVIDIA driver on your system
#    (CUDA build of torch) / AssertionError: Torch not compiled with CUDA enabled (CPU build).
# ---------------------------------------------------------------------------------------------
def fix_ddp_cpu():
    from basicsr.models.base_model import BaseModel
    original = BaseModel.model_to_device
    if getattr(original, '_agile_ir_fix', False) or not _once('ddp_on_cpu'):
        return

    def model_to_device(self, net):
        if self.opt.get('dist') and self.device.type == 'cpu':
            from torch.nn.parallel import DistributedDataParallel
            net = net.to(self.device)
            return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return original(self, net)

    model_to_device._agile_ir_fix = True
    model_to_device._agile_ir_original = original
    BaseModel.model_to_device = model_to_device


# ---------------------------------------------------------------------------------------------
# 4. BaseModel.get_optimizer knows only 'Adam'.
#    Prevents: NotImplementedError: optimizer AdamW is not supperted yet.  (ESC and Restormer
#    recipes use AdamW.)  Any class of torch.optim is accepted by its name; Adam stays as it was.
# ---------------------------------------------------------------------------------------------
def fix_optimizers():
    from basicsr.models.base_model import BaseModel
    original = BaseModel.get_optimizer
    if getattr(original, '_agile_ir_fix', False):
        return
    try:  # feature detection: does BasicSR already accept a non-Adam optimizer?
        import torch
        original(None, 'AdamW', [torch.nn.Parameter(torch.zeros(1))], 1e-3)
        return
    except NotImplementedError:
        pass
    if not _once('torch_optim_by_name'):
        return

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        import torch
        cls = getattr(torch.optim, optim_type, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise NotImplementedError(f'optimizer {optim_type!r} is not a torch.optim optimizer '
                                      f'(e.g. Adam, AdamW, SGD).')
        return cls(params, lr, **kwargs)

    get_optimizer._agile_ir_fix = True
    get_optimizer._agile_ir_original = original
    BaseModel.get_optimizer = get_optimizer



# ---------------------------------------------------------------------------------------------
# 5. Upstream basicsr.train.load_resume_state maps the state onto torch.cuda.current_device().
#    Prevents, for BasicSR's own `basicsr.train.train_pipeline` with --auto_resume (or
#    path.resume_state) on a CPU machine: RuntimeError: Found no NVIDIA driver on your system.
#    train_pipeline calls the module-level function by name and BasicSR has no hook for where a
#    state is loaded, so the module's function is replaced by one that loads onto the current
#    CUDA device when there is one, else the CPU (weights-only, as torch >= 2.6 defaults to).
#    Our own trainer (agile_ir_plugin.basicsr.trainer) does not use it.
# ---------------------------------------------------------------------------------------------
def load_resume_state(opt):
    """BasicSR's ``load_resume_state`` that also works without CUDA."""
    import os.path as osp

    import torch
    from basicsr.utils import check_resume, scandir
    path = None
    if opt['auto_resume']:
        state_dir = osp.join('experiments', opt['name'], 'training_states')
        if osp.isdir(state_dir):
            states = [float(v.split('.state')[0]) for v in scandir(state_dir, suffix='state', recursive=False)]
            if states:
                path = osp.join(state_dir, f'{max(states):.0f}.state')
                opt['path']['resume_state'] = path
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
    if path is None:
        return None
    device = torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else 'cpu'
    state = torch.load(path, map_location=device, weights_only=True)
    check_resume(opt, state['iter'])
    return state


def _needs_resume_fix(train_module):
    import inspect
    try:
        src = inspect.getsource(train_module.load_resume_state)
    except (OSError, TypeError, AttributeError):
        return False
    return 'torch.cuda.current_device()' in src


def fix_upstream_resume():
    import basicsr.train as train_module
    if not _needs_resume_fix(train_module) or not _once('upstream_resume_on_cpu'):
        return
    train_module.load_resume_state = load_resume_state


def apply_basicsr_fixes():
    """Fixes needed before and right after ``import basicsr``; idempotent."""
    fix_functional_tensor()
    fix_init_dist()
    fix_ddp_cpu()
    fix_optimizers()
    fix_upstream_resume()


# =============================================================================================
# MMagic 1.2.0 / mmengine 0.10.7 / mmcv-lite 2.1.0 on torch >= 2.6 and numpy 2.
# apply_mmagic_fixes() runs before the first `import mmagic` (agile_ir_plugin.mmagic calls it);
# nothing here is imported or applied by `import agile_ir_plugin`.  Tests: tests/mmagic/test_mmagic_compat.py
# =============================================================================================

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
# ============================== end of the MMagic section =====================================
