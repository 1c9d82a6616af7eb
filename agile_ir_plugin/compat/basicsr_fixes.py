"""BasicSR 1.4.2 on today's stack (torch >= 2.14, torchvision >= 0.17): the fixes ``import
agile_ir_plugin`` applies around the first ``import basicsr``.  Tests: ``tests/test_compat.py``."""
import importlib.util
import sys
import types

from . import _once


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
