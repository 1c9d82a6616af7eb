"""BasicSR training with exact resume, crash-safe checkpoints, pre-emption and NaN guards.

This is BasicSR 1.4.2's ``train_pipeline`` flow (parse options -> resume state -> dirs and loggers
-> dataloaders -> ``build_model`` -> iterate -> log / save / validate), built from BasicSR's own
components (``parse_options``, ``build_dataset``, ``build_dataloader``, ``build_model``,
``MessageLogger``, prefetchers, ``check_resume``, ``make_exp_dirs``).  The loop itself is ours
because what users need lives inside it and BasicSR's loop has no seam for it:

- **Exact resume**: the training state also records the batches consumed in the current epoch
  and the RNG states; the sampler skips what was consumed, and every sample's augmentation is
  seeded by ``(manual_seed, epoch, sample position)`` so it does not depend on which process or
  worker loads it.  A run stopped at any iteration and resumed ends with the weights of an
  uninterrupted run.  (BasicSR restarts the epoch and reseeds workers from scratch.)
- **Crash-safe checkpoints**: weights and state are written to a staging folder, fsynced and
  renamed into place, the ``.state`` last, so an interrupted save never replaces or shadows a
  complete checkpoint.  Auto-resume takes the newest state whose weights load, and says which.
- **Device-agnostic, safe loading**: states are loaded with ``weights_only=True`` onto the
  current device (BasicSR calls ``torch.cuda.current_device()``, which fails on CPU).
- **Pre-emption**: SIGTERM finishes the current iteration, saves, and exits with code 0.
- **Numerical guard**: an optimizer step whose gradients are not finite is skipped and counted;
  after ``train.max_bad_steps`` (default 10) consecutive bad steps the run stops with a message.
  No checkpoint is written during a run of bad steps, so the newest one is the last good one.
- **Preflight**: ``validation.validate_options`` checks datasets, pretrained weights and option
  keys before anything is written (one actionable line per problem).
- **Mixed precision**: ``train.amp: bf16 | fp16`` runs the generator's forward under
  ``torch.autocast`` (loss and optimizer in fp32); fp16 adds a ``GradScaler`` whose state is part
  of the training state, so resume stays exact.

Fault injection (tests only): ``AGILE_IR_STALL_AT=<point>[@<iter>]`` makes the process announce
``AGILE_IR_STALLED <point> <iter>`` on stderr and sleep there (``AGILE_IR_STALL_SECONDS``, default
30) so a test can SIGKILL it at a known place; see ``STALL_POINTS``.
"""
import contextlib
import datetime
import io
import logging
import os
import random
import shutil
import signal
import time
from os import path as osp

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checkpoint import load_checkpoint
from .validation import InputError, validate_options

STATE_KEY = 'agile_ir'  # our additions inside a BasicSR training state


# --------------------------------------------------------------------------------------------
# Data order and augmentation that survive a restart
# --------------------------------------------------------------------------------------------
def _sampler_base():
    from basicsr.data.data_sampler import EnlargedSampler
    return EnlargedSampler


class ResumableSampler(_sampler_base()):
    """BasicSR's ``EnlargedSampler`` order (``randperm(total_size)`` seeded by the epoch, sliced by
    rank) that can skip the samples already consumed in an epoch, and that yields
    ``epoch * total_size + position`` so the dataset can seed each sample deterministically."""

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.epoch)
        positions = torch.randperm(self.total_size, generator=g).tolist()
        positions = positions[self.rank:self.total_size:self.num_replicas]
        skip, self.skip = self.skip, 0
        offset = self.epoch * self.total_size
        return iter([offset + p for p in positions[skip:]])


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``epoch * total_size + position`` is ``dataset[position % len]``
    loaded with ``random``, ``numpy`` and torch's CPU RNG seeded from ``(seed, epoch, position)``.
    The caller's RNG states are restored afterwards, so the model's randomness is untouched."""

    def __init__(self, dataset, seed, total_size):
        self.dataset, self.seed, self.total_size = dataset, int(seed), int(total_size)

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # datasets expose opt, paths, ... that loggers may read
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, code):
        epoch, position = divmod(int(code), self.total_size)
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)[0])
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        index = position % len(self.dataset)
        try:
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            torch.default_generator.manual_seed(sample_seed)
            return self.dataset[index]
        except Exception as err:  # name the file: BasicSR says e.g. "'NoneType' has no attribute 'astype'"
            paths = getattr(self.dataset, 'paths', None)
            files = paths[index] if isinstance(paths, (list, tuple)) and index < len(paths) else f'sample {index}'
            if isinstance(files, dict):
                files = ', '.join(str(v) for v in files.values())
            raise InputError(f'{files}: could not be loaded as a training sample ({type(err).__name__}: '
                             f'{str(err).strip().splitlines()[0] if str(err).strip() else "no message"}); '
                             'check or remove the file.') from err
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


# --------------------------------------------------------------------------------------------
# RNG states as plain tensors (so states load with weights_only=True)
# --------------------------------------------------------------------------------------------
def get_rng_states():
    np_state = np.random.get_state()
    states = {
        'python': random.getstate(),
        'numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    random.setstate(_to_tuple(states['python']))
    name, keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------------------------
# Checkpoints: atomic save, verified resume
# --------------------------------------------------------------------------------------------
def _network_names(opt):
    return [key.replace('network_', '') for key in opt if key.startswith('network_')]


def _fsync_replace(src, dst):
    with open(src, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(src, dst)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(model, opt, epoch, current_iter, extra, logger):
    """``model.save(epoch, current_iter)`` made atomic: BasicSR writes into a staging folder, we add
    our resume info to the state, fsync every file and rename it into place, the state last.

    Only rank 0 writes (BasicSR's save methods are ``master_only``)."""
    if opt['rank'] != 0:
        return
    models_dir, states_dir = opt['path']['models'], opt['path']['training_states']
    stage = osp.join(opt['path']['experiments_root'], f'.saving_{current_iter}')
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    model.opt['path']['models'] = model.opt['path']['training_states'] = stage
    try:
        with _torch_save_stall(current_iter):
            model.save(epoch, current_iter)
    finally:
        model.opt['path']['models'], model.opt['path']['training_states'] = models_dir, states_dir
    tag = 'latest' if current_iter == -1 else current_iter
    weights = [f'net_{name}_{tag}.pth' for name in _network_names(opt)]
    missing = [f for f in weights if not osp.isfile(osp.join(stage, f))]
    if missing:  # BasicSR logs and gives up after its retries: never publish a partial checkpoint
        shutil.rmtree(stage, ignore_errors=True)
        raise RuntimeError(f'Could not write {missing} for iter {current_iter} (disk full or not writable?); '
                           f'the previous checkpoints in {models_dir} are untouched.')
    state_file = f'{current_iter}.state'
    if current_iter != -1:
        state = torch.load(osp.join(stage, state_file), map_location='cpu', weights_only=True)
        state[STATE_KEY] = extra
        _stall_for_tests('before_state_write', current_iter)
        _save_for_tests(state, osp.join(stage, state_file), 'inside_state_write', current_iter)
    for f in weights:
        _fsync_replace(osp.join(stage, f), osp.join(models_dir, f))
    _fsync_dir(models_dir)
    _stall_for_tests('between_renames', current_iter)
    if current_iter != -1:
        _fsync_replace(osp.join(stage, state_file), osp.join(states_dir, state_file))
        _fsync_dir(states_dir)
    _stall_for_tests('after_state_rename', current_iter)
    shutil.rmtree(stage, ignore_errors=True)
    logger.info(f'Saved checkpoint of iter {tag}: {", ".join(weights)}'
                + (f' + {state_file}' if current_iter != -1 else ''))


#: Where ``AGILE_IR_STALL_AT`` can stall, in the order they are reached in an iteration.
STALL_POINTS = (
    'after_step',            # the optimizer step is done, nothing of this iteration saved yet
    'inside_weights_write',  # half of a net_*.pth written (in the staging folder)
    'before_state_write',    # all weights in the staging folder, the .state not yet
    'inside_state_write',    # half of the .state written (in the staging folder)
    'between_renames',       # weights renamed into models/, the .state not yet published
    'after_state_rename',    # checkpoint complete, staging folder not yet removed
)


def _stall_requested(point, current_iter):
    spec = os.environ.get('AGILE_IR_STALL_AT')
    if not spec:
        return False
    name, _, at = spec.partition('@')
    return name == point and (not at or int(at) == current_iter)


def _stall_for_tests(point, current_iter=None):
    """Fault-injection hook: announce the point on stderr and sleep so a test can kill us there."""
    if _stall_requested(point, current_iter):
        import sys
        sys.stderr.write(f'AGILE_IR_STALLED {point} {current_iter}\n')
        sys.stderr.flush()
        time.sleep(float(os.environ.get('AGILE_IR_STALL_SECONDS', '30')))


def _save_for_tests(obj, path, point, current_iter, save=torch.save):
    """``torch.save``; under the ``point`` stall, write half of the bytes first and stall there."""
    if not _stall_requested(point, current_iter):
        return save(obj, path)
    buffer = io.BytesIO()
    save(obj, buffer)
    with open(path, 'wb') as f:
        f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
    _stall_for_tests(point, current_iter)
    return save(obj, path)


@contextlib.contextmanager
def _torch_save_stall(current_iter):
    """Route BasicSR's ``torch.save`` of weights through ``_save_for_tests`` (only when stalling)."""
    if not _stall_requested('inside_weights_write', current_iter):
        yield
        return
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and str(f).endswith('.pth'):
            return _save_for_tests(obj, f, 'inside_weights_write', current_iter, save=original)
        return original(obj, f, *args, **kwargs)
    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def remove_stale_staging(opt, notes):
    """Staging folders left by a save that was killed hold nothing a complete checkpoint lacks."""
    root = opt['path']['experiments_root']
    if opt['rank'] != 0 or not osp.isdir(root):
        return
    for name in sorted(os.listdir(root)):
        if name.startswith('.saving_'):
            shutil.rmtree(osp.join(root, name), ignore_errors=True)
            notes.append(('info', f'Removed {name} in {root}: the staging folder of an interrupted save.'))


def verify_state(opt, state_path):
    """Load ``state_path`` and check its networks' weight files load; returns the state or raises."""
    state = load_checkpoint(state_path)
    for key in ('epoch', 'iter', 'optimizers', 'schedulers'):
        if key not in state:
            raise ValueError(f'{state_path} is not a BasicSR training state (no {key!r} key)')
    for name in _network_names(opt):
        load_checkpoint(osp.join(opt['path']['models'], f"net_{name}_{state['iter']}.pth"))
    return state


def find_resume_state(opt, notes):
    """The state to resume from: ``path.resume_state`` if set, else with ``--auto_resume`` the newest
    state in this experiment's ``training_states`` whose weights are complete."""
    explicit = opt['path'].get('resume_state')
    if explicit and not opt['auto_resume']:
        return explicit, verify_state(opt, explicit)
    if not opt['auto_resume']:
        return None, None
    states_dir = opt['path']['training_states']
    if not osp.isdir(states_dir):
        return None, None
    candidates = []
    for f in os.listdir(states_dir):
        stem = f[:-len('.state')] if f.endswith('.state') else None
        if stem is not None and stem.isdigit():
            candidates.append(int(stem))
    for it in sorted(candidates, reverse=True):
        path = osp.join(states_dir, f'{it}.state')
        try:
            state = verify_state(opt, path)
        except Exception as err:  # incomplete or corrupt: fall back to an older complete one
            notes.append(('warning', f'Auto-resume: skipping {path}: {err}'))
            continue
        notes.append(('info', f'Auto-resume: using {path} (newest complete state and weights).'))
        return path, state
    return None, None


# --------------------------------------------------------------------------------------------
# Pre-emption and non-finite steps
# --------------------------------------------------------------------------------------------
class StopRequest:
    """Set by SIGTERM; the loop saves and exits after the iteration in progress."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def install(self):
        self._previous = signal.signal(signal.SIGTERM, self._handler)

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handler(self, signum, frame):
        self.requested = True

    def agreed(self, opt):
        """In DDP every rank must stop at the same iteration: any rank's request stops all."""
        if not opt['dist']:
            return self.requested
        import torch.distributed as dist
        flag = torch.tensor([1.0 if self.requested else 0.0])
        if dist.get_backend() == 'nccl':
            flag = flag.cuda()
        dist.all_reduce(flag)
        return flag.item() > 0


class TrainingStopped(RuntimeError):
    """The run cannot usefully continue (e.g. too many non-finite steps); one-line message."""


class NonFiniteStepGuard:
    """Wraps each optimizer's ``step``: non-finite gradients skip the step (grads cleared).

    ``skipped`` counts every skipped step, ``consecutive`` the current run of them (reset by a good
    step); ``exhausted()`` once ``max_bad`` (``train.max_bad_steps``; 0 = never) are in a row."""

    def __init__(self, model, max_bad, logger, skipped=0):
        self.max_bad, self.logger = max_bad, logger
        self.skipped, self.consecutive = skipped, 0
        self.current_iter = 0
        for optimizer in model.optimizers:
            optimizer.step = self._wrap(optimizer, optimizer.step)

    def record_bad(self, what):
        self.skipped += 1
        self.consecutive += 1
        self.logger.warning(f'iter {self.current_iter}: {what}, step skipped '
                            f'({self.consecutive} in a row, {self.skipped} in total).')

    def _wrap(self, optimizer, step):
        def guarded_step(*args, **kwargs):
            grads = [p.grad for g in optimizer.param_groups for p in g['params'] if p.grad is not None]
            finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True
            if finite:
                self.consecutive = 0
                return step(*args, **kwargs)
            optimizer.zero_grad(set_to_none=True)
            self.record_bad('non-finite loss or gradient')
            return None
        if hasattr(step, '_wrapped_by_lr_sched'):  # keep torch's "step before scheduler" bookkeeping
            guarded_step._wrapped_by_lr_sched = step._wrapped_by_lr_sched
        return guarded_step

    def exhausted(self):
        return self.max_bad > 0 and self.consecutive >= self.max_bad


# --------------------------------------------------------------------------------------------
# Mixed precision
# --------------------------------------------------------------------------------------------
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


class MixedPrecision:
    """``train.amp: bf16 | fp16`` for BasicSR models, without touching their ``optimize_parameters``.

    The generator's forward (``net_g``, DDP wrapper included) runs under ``torch.autocast`` and its
    output is returned in fp32, so the losses, the backward into the output, the optimizer and the
    EMA stay fp32 (weights are fp32 throughout; only activations are half).  For fp16 a
    ``torch.amp.GradScaler`` scales the gradient where it enters the network (a hook on the fp32
    output: the same as scaling a loss that depends on the weights only through ``net_g``'s
    output) and ``optimizer.step`` goes through ``scaler.step`` / ``scaler.update``; an overflow
    step is skipped and counted by the ``NonFiniteStepGuard``.  The scaler's state is saved in the
    training state, so a resumed fp16 run is exact.  fp16 needs a model with one optimizer (GAN
    models step two): use bf16 there."""

    def __init__(self, model, mode, guard):
        self.mode, self.dtype, self.guard = mode, AMP_DTYPES[mode], guard
        self.device_type = model.device.type
        self.scaler = None
        net = model.net_g
        forward = net.forward
        if mode == 'fp16':
            if len(model.optimizers) != 1:
                raise InputError(f'train.amp: fp16 supports models with one optimizer, got {len(model.optimizers)} '
                                 f'({type(model).__name__}); use amp: bf16.')
            self.scaler = torch.amp.GradScaler(self.device_type)
            optimizer = model.optimizers[0]
            optimizer.step = self._scaled_step(optimizer, optimizer.step)

        def autocast_forward(*args, **kwargs):
            with torch.autocast(self.device_type, dtype=self.dtype):
                out = forward(*args, **kwargs)
            out = out.float()
            if self.scaler is not None and out.requires_grad:
                out.register_hook(self.scaler.scale)
            return out
        net.forward = autocast_forward

    def _scaled_step(self, optimizer, inner):
        def step(*args, **kwargs):
            optimizer.step = inner  # GradScaler.step calls optimizer.step once the grads are finite
            try:
                before = self.scaler.get_scale()
                self.scaler.step(optimizer, *args, **kwargs)
            finally:
                optimizer.step = step
            self.scaler.update()
            if self.scaler.get_scale() < before:  # update() backs off only after an overflow
                optimizer.zero_grad(set_to_none=True)
                self.guard.record_bad(f'fp16 gradient overflow (loss scale now {self.scaler.get_scale():g})')
            return None
        if hasattr(inner, '_wrapped_by_lr_sched'):
            step._wrapped_by_lr_sched = inner._wrapped_by_lr_sched
        return step

    def state_dict(self):
        return {'mode': self.mode, 'scaler': self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state):
        if state and self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])


def check_ranks_agree(model, opt, logger):
    """DDP sanity check at the end of training: every rank's weights equal rank 0's."""
    import torch.distributed as dist
    params = [p.detach().reshape(-1).double() for p in model.get_bare_model(model.net_g).parameters()]
    flat = torch.cat(params)
    device = flat.device if dist.get_backend() != 'nccl' else torch.device('cuda', torch.cuda.current_device())
    probe = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=flat.dtype,
                                                           device=flat.device)).sum()]).to(device)
    gathered = [torch.zeros_like(probe) for _ in range(opt['world_size'])]
    dist.all_gather(gathered, probe)
    if all(torch.equal(g, gathered[0]) for g in gathered):
        logger.info(f"DDP check: all {opt['world_size']} ranks hold identical weights.")
    else:
        logger.warning(f'DDP check: ranks hold different weights: {[g.tolist() for g in gathered]}')


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------
def create_train_val_dataloader(opt, logger):
    from basicsr.data import build_dataloader, build_dataset
    train_loader = sampler = None
    val_loaders = []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = build_dataset(dataset_opt)
            sampler = ResumableSampler(train_set, opt['world_size'], opt['rank'], ratio)
            seeded = SeededSamples(train_set, opt['manual_seed'], sampler.total_size)
            train_loader = build_dataloader(seeded, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                            sampler=sampler, seed=opt['manual_seed'])
            # the loader's own base-seed draws must not consume the global RNG the model uses
            train_loader.generator = torch.Generator().manual_seed(opt['manual_seed'])
            iters_per_epoch = sampler.num_samples // dataset_opt['batch_size_per_gpu']
            if iters_per_epoch == 0:
                raise ValueError(f"datasets.train: {len(train_set)} images x enlarge ratio {ratio} over "
                                 f"{opt['world_size']} process(es) is fewer than batch_size_per_gpu="
                                 f"{dataset_opt['batch_size_per_gpu']}: lower the batch size or raise "
                                 'dataset_enlarge_ratio.')
            logger.info(f"Training statistics:\n\tNumber of train images: {len(train_set)}"
                        f"\n\tDataset enlarge ratio: {ratio}\n\tBatch size per gpu: {dataset_opt['batch_size_per_gpu']}"
                        f"\n\tWorld size (gpu number): {opt['world_size']}\n\tIters per epoch: {iters_per_epoch}"
                        f"\n\tTotal iters: {int(opt['train']['total_iter'])}.")
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                                sampler=None, seed=opt['manual_seed']))
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
        else:
            raise ValueError(f'Dataset phase {phase} is not recognized.')
    if train_loader is None:
        raise ValueError("The options have no 'datasets: train:' section.")
    return train_loader, sampler, val_loaders, iters_per_epoch


def _make_prefetcher(loader, opt):
    from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
    mode = opt['datasets']['train'].get('prefetch_mode')
    if mode in (None, 'cpu'):
        return CPUPrefetcher(loader)
    if mode == 'cuda':
        if opt['datasets']['train'].get('pin_memory') is not True:
            raise ValueError('Please set pin_memory=True for CUDAPrefetcher.')
        return CUDAPrefetcher(loader, opt)
    raise ValueError(f"Wrong prefetch_mode {mode}. Supported ones are: None, 'cuda', 'cpu'.")


def _init_tb_logger(opt):
    from basicsr.utils import init_tb_logger, init_wandb_logger
    logger_opt = opt['logger']
    if logger_opt.get('wandb') is not None and logger_opt['wandb'].get('project') and 'debug' not in opt['name']:
        init_wandb_logger(opt)
    if logger_opt.get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
        return init_tb_logger(log_dir=osp.join(opt['root_path'], 'tb_logger', opt['name']))
    return None


def train_pipeline(root_path, opt=None, args=None, argv=None):
    """Train from BasicSR options (``argv``: the command line after the program name; default
    ``sys.argv[1:]``).  Returns ``{'stopped_at', 'preempted', 'model'?}``; raises ``InputError`` /
    ``CheckpointError`` for bad options, data or checkpoints (before anything is written) and
    ``TrainingStopped`` after too many non-finite steps."""
    stop = StopRequest()
    stop.install()  # before anything slow: a SIGTERM from here on ends in a clean save or exit
    try:
        return _train(root_path, opt, args, argv, stop)
    finally:
        stop.uninstall()


def _train(root_path, opt, args, argv, stop):
    from basicsr.models import build_model
    from basicsr.utils import (AvgTimer, MessageLogger, check_resume, get_env_info, get_root_logger, get_time_str,
                               make_exp_dirs, mkdir_and_rename)
    from basicsr.utils.options import copy_opt_file, dict2str

    from .options import parse_train_options
    if opt is None:
        opt, args = parse_train_options(root_path, argv)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True

    notes = []  # resume decisions, logged once BasicSR's logger exists (it needs the experiment dir)
    resume_path, resume_state = find_resume_state(opt, notes)
    # preflight: nothing has been written yet; pretrained weights are not used when resuming
    notes += [('warning', w) for w in validate_options(opt, check_weights=resume_state is None)]
    if opt['auto_resume']:
        remove_stale_staging(opt, notes)
    if resume_state is not None:
        opt['path']['resume_state'] = resume_path
        check_resume(opt, resume_state['iter'])
    else:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
            mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
    copy_opt_file(args.opt, opt['path']['experiments_root'])

    log_file = osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    for level, note in notes:
        getattr(logger, level)(note)
    tb_logger = _init_tb_logger(opt)

    train_loader, sampler, val_loaders, iters_per_epoch = create_train_val_dataloader(opt, logger)
    total_iters = int(opt['train']['total_iter'])

    model = build_model(opt)
    start_epoch, current_iter, epoch_iter = 0, 0, 0
    if resume_state is not None:
        model.resume_training(resume_state)  # optimizers and schedulers; weights came via check_resume
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
        extra = resume_state.get(STATE_KEY)
        if extra is not None:
            epoch_iter = extra['epoch_iter']
            set_rng_states(extra['rng'])
        else:
            logger.warning('This state was written by BasicSR itself: the epoch restarts from its first '
                           'batch and RNG states are not restored (resume is not exact).')
        logger.info(f'Resuming training from epoch: {start_epoch}, iter: {current_iter}.')

    extra = resume_state.get(STATE_KEY) if resume_state is not None else None
    guard = NonFiniteStepGuard(model, int(opt['train'].get('max_bad_steps', 10)), logger,
                               skipped=(extra or {}).get('skipped_steps', 0))
    amp_mode = opt['train'].get('amp')
    amp = MixedPrecision(model, amp_mode, guard) if amp_mode in AMP_DTYPES else None
    if amp is not None:
        amp.load_state_dict((extra or {}).get('amp'))
        logger.info(f'Mixed precision: net_g forward under autocast({amp_mode}) on {amp.device_type}'
                    + (', GradScaler' if amp.scaler is not None else '') + '.')
    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    save_freq = opt['logger']['save_checkpoint_freq']
    val_opt = opt.get('val')
    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')

    epoch = start_epoch
    last_good_save = current_iter if resume_state is not None else None
    while current_iter < total_iters:
        sampler.set_epoch(epoch, skip=epoch_iter * opt['datasets']['train']['batch_size_per_gpu'])
        prefetcher = _make_prefetcher(train_loader, opt)
        train_data = prefetcher.next()
        while train_data is not None and current_iter < total_iters:
            data_timer.record()
            current_iter += 1
            epoch_iter += 1
            guard.current_iter = current_iter
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            _stall_for_tests('after_step', current_iter)
            iter_timer.record()
            if current_iter == 1:
                msg_logger.reset_start_time()
            if current_iter % opt['logger']['print_freq'] == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate(),
                            'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()}
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if guard.exhausted():
                if tb_logger:
                    tb_logger.close()
                kept = (f'the newest checkpoint in {opt["path"]["models"]} is the last good one (iter {last_good_save})'
                        if last_good_save is not None else 'no checkpoint had been written')
                raise TrainingStopped(
                    f'stopped at iter {current_iter}: {guard.consecutive} consecutive steps had a non-finite loss '
                    f'or gradient (train.max_bad_steps={guard.max_bad}; {guard.skipped} skipped in all); {kept}. '
                    'Lower the learning rate, check the data, or train in fp32, then resume with --auto_resume.')
            preempt = stop.agreed(opt)
            if (current_iter % save_freq == 0 or preempt) and guard.consecutive == 0:
                save_checkpoint(model, opt, epoch, current_iter,
                                {'epoch_iter': epoch_iter, 'rng': get_rng_states(),
                                 'skipped_steps': guard.skipped,
                                 'amp': amp.state_dict() if amp is not None else None}, logger)
                last_good_save = current_iter
            elif current_iter % save_freq == 0 or preempt:
                logger.warning(f'iter {current_iter}: no checkpoint written: the last step was skipped as non-finite.')
            if preempt:
                logger.info(f'SIGTERM: {"saved" if last_good_save == current_iter else "no checkpoint at"} iter '
                            f'{current_iter}; exiting. Resume with --auto_resume.')
                if tb_logger:
                    tb_logger.close()
                return {'stopped_at': current_iter, 'preempted': True}
            if val_opt is not None and current_iter % val_opt['val_freq'] == 0:
                for val_loader in val_loaders:
                    model.validation(val_loader, current_iter, tb_logger, val_opt['save_img'])
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()
        if train_data is None:  # epoch finished
            epoch += 1
            epoch_iter = 0

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    if guard.skipped:
        logger.info(f'{guard.skipped} optimizer step(s) were skipped for non-finite gradients.')
    if opt['dist']:
        check_ranks_agree(model, opt, logger)
    logger.info('Save the latest model.')
    save_checkpoint(model, opt, epoch, -1, None, logger)
    if val_opt is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, val_opt['save_img'])
    if tb_logger:
        tb_logger.close()
    return {'stopped_at': current_iter, 'preempted': False, 'model': model}
