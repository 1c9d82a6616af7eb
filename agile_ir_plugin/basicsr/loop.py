"""BasicSR training, read top to bottom like BasicSR 1.4.2's ``basicsr/train.py::train_pipeline``.

The steps and their names are BasicSR's (parse options -> resume state -> experiment folders and
loggers -> dataloaders -> model -> iterate: learning rate, ``feed_data``, ``optimize_parameters``,
log, save, validate -> save the latest -> validate).  What this loop adds comes from small modules,
each attached through a seam built once:

- ``data_order``: exact resume (the sampler skips what the epoch consumed; samples and RNGs seeded).
- ``checkpointing``: ``VerifiedSaves`` (a model mixin) + ``CheckpointWriter``: a file is published
  only when verified, a failed save stops the run; ``find_resume_state`` for ``--auto_resume``.
- ``guards``: ``StopRequest`` (SIGTERM), ``StepGuard`` (non-finite steps, via ``GuardedSteps``, a
  model mixin that hooks every optimizer it builds).
- ``precision``: ``train.amp`` as a context around ``optimize_parameters``.
- ``progress`` / ``report``: log lines with a correct ETA, a bar on a terminal, one final
  validation, the closing summary and the pictures.
- ``faults``: the crash tests' stall points (inactive unless ``AGILE_IR_STALL_AT`` is set).
"""
import contextlib
import logging
from os import path as osp

import torch

from .checkpointing import (STATE_KEY, CheckpointWriter, CheckpointWriteError, VerifiedSaves, find_resume_state,
                            remove_stale_staging)
from .data_order import create_train_val_dataloader, get_rng_states, make_prefetcher, set_rng_states
from .faults import FaultInjector
from .guards import GuardedSteps, StepGuard, StopRequest, any_rank
from .precision import build_precision
from .pretrained import ExactPretrainedLoads
from .progress import Progress, run_log_file
from .report import COMPARISON_FILE, CURVE_FILE, bicubic_metrics, log_summary, write_comparison, write_curve
from .preflight import InputError, run_preflight


def train_pipeline(root_path, argv=None, stop=None, start_fresh=False):
    """Train from BasicSR options (``argv``: the command line after the program name).

    Returns ``{'stopped_at', 'preempted', 'model'?}``.  Raises ``InputError`` / ``CheckpointError`` /
    ``ResumeError`` (and the preflight's errors) before anything is written, ``CheckpointWriteError``
    when a save fails, ``TrainingStopped`` when the guard stops the run and ``StopRequested`` for a
    SIGTERM that came before anything was written.  ``stop``: the ``StopRequest`` the command
    installed at its start (installed here if None)."""
    own_stop = stop is None
    stop = StopRequest.install() if own_stop else stop
    try:
        return _train(root_path, argv, stop, start_fresh, FaultInjector.from_env())
    finally:
        if own_stop:
            stop.uninstall()


def preflight(opt, resume_state):
    """Every check of the options, data, checkpoints and output folders; returns warnings, raises
    ``PreflightError`` listing every problem."""
    return run_preflight(opt, tool='train', resume_state=resume_state)


def build_training_model(opt, writer, guard, logger):
    """BasicSR's ``build_model`` with our mixins in front of the registered model class."""
    from copy import deepcopy

    from basicsr.utils.registry import MODEL_REGISTRY
    cls = MODEL_REGISTRY.get(opt['model_type'])
    trained = type(cls.__name__, (VerifiedSaves, GuardedSteps, ExactPretrainedLoads, cls),
                   {'checkpoint_writer': writer, 'step_guard': guard, '__module__': cls.__module__})
    model = trained(deepcopy(opt))
    guard.ensure_attached(model.optimizers, logger)
    logger.info(f'Model [{cls.__name__}] is created.')
    return model


def make_experiment(opt, args, resume_path, resume_state, notes):
    """BasicSR's folders for a new run (archiving an old one) or a resumed one, and the options copy."""
    from basicsr.utils import check_resume, make_exp_dirs, mkdir_and_rename
    from basicsr.utils.options import copy_opt_file
    try:
        if opt['auto_resume']:
            remove_stale_staging(opt, notes)
        if resume_state is not None:
            opt['path']['resume_state'] = resume_path
            check_resume(opt, resume_state['iter'])
        else:
            make_exp_dirs(opt)
            if tensorboard_wanted(opt):
                mkdir_and_rename(osp.join(opt['root_path'], 'tb_logger', opt['name']))
        copy_opt_file(args.opt, opt['path']['experiments_root'])
    except OSError as err:
        raise InputError(f'cannot write the experiment folder {opt["path"]["experiments_root"]}: '
                         f'{err.strerror or err} ({err.filename}).') from None


def tensorboard_wanted(opt):
    """BasicSR's condition for TensorBoard (rank 0 only), and tensorboard installed."""
    import importlib.util
    return (bool(opt['logger'].get('use_tb_logger')) and 'debug' not in opt['name'] and opt['rank'] == 0
            and importlib.util.find_spec('tensorboard') is not None)


def init_tb_loggers(opt, logger):
    """BasicSR's TensorBoard / wandb loggers; with ``use_tb_logger`` but no tensorboard, one INFO line."""
    from basicsr.utils import init_tb_logger, init_wandb_logger
    logger_opt = opt['logger']
    if not tensorboard_wanted(opt):
        if logger_opt.get('use_tb_logger') and opt['rank'] == 0 and 'debug' not in opt['name']:
            logger.info(f'logger.use_tb_logger: tensorboard is not installed, so no TensorBoard logs (pip install '
                        f'tensorboard); {CURVE_FILE} is written at the end of the run.')
        return None
    if logger_opt.get('wandb') is not None and logger_opt['wandb'].get('project'):
        init_wandb_logger(opt)
    return init_tb_logger(log_dir=osp.join(opt['root_path'], 'tb_logger', opt['name']))


def save_checkpoint(model, writer, opt, epoch, current_iter, extra, logger):
    """``model.save`` through the writer on rank 0 (as BasicSR's ``master_only`` saves); in DDP every
    rank learns whether it worked, so a failed save stops all ranks instead of leaving them waiting."""
    error = None
    if opt['rank'] == 0:
        try:
            with writer.checkpoint(current_iter, extra):
                model.save(epoch, current_iter)
        except CheckpointWriteError as err:
            error = err
    if opt['dist'] and any_rank(error is not None) and error is None:
        error = CheckpointWriteError(f'rank 0 could not save the checkpoint of iter {current_iter}; stopping.')
    if error is not None:
        raise error
    if opt['rank'] == 0:
        tag = 'latest' if current_iter == -1 else current_iter
        logger.info(f'Saved checkpoint of iter {tag}: {" + ".join(osp.basename(p) for p in writer.published)}')


def validate(model, val_loaders, current_iter, tb_logger, opt, progress):
    for val_loader in val_loaders:
        model.validation(val_loader, current_iter, tb_logger, opt['val']['save_img'])
        progress.validated(current_iter, model, val_loader.dataset.opt['name'])


def check_ranks_agree(model, opt, logger):
    """DDP sanity check at the end of training: every rank's weights equal rank 0's."""
    import torch.distributed as dist
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.get_bare_model(model.net_g).parameters()])
    device = flat.device if dist.get_backend() != 'nccl' else torch.device('cuda', torch.cuda.current_device())
    weights = torch.arange(1, flat.numel() + 1, dtype=flat.dtype, device=flat.device)
    probe = torch.stack([flat.sum(), (flat * weights).sum()]).to(device)
    gathered = [torch.zeros_like(probe) for _ in range(opt['world_size'])]
    dist.all_gather(gathered, probe)
    if all(torch.equal(g, gathered[0]) for g in gathered):
        logger.info(f"DDP check: all {opt['world_size']} ranks hold identical weights.")
    else:
        logger.warning(f'DDP check: ranks hold different weights: {[g.tolist() for g in gathered]}')


def finish(model, val_loaders, opt, progress, logger, current_iter):
    """Rank 0, after the final validation: bicubic baseline, pictures, closing summary."""
    root = opt['path']['experiments_root']
    files = [('latest weights', osp.join(opt['path']['models'], 'net_g_latest.pth'))]
    states = osp.join(opt['path']['training_states'], f'{current_iter}.state')
    if osp.isfile(states):
        files.append(('newest training state', states))
    bicubic = {}
    if opt.get('val') is not None and val_loaders:
        for loader in val_loaders:
            bicubic[loader.dataset.opt['name']] = bicubic_metrics(loader, opt)
        try:  # the checkpoints are saved: a picture that cannot be drawn is a warning, not a failed run
            if write_curve(progress.history, bicubic, osp.join(root, CURVE_FILE), logger):
                files.append(('training curve', osp.join(root, CURVE_FILE)))
            if write_comparison(model, val_loaders[0], opt, osp.join(root, COMPARISON_FILE)):
                what = 'bicubic | model | HR' if opt.get('scale', 1) > 1 else 'input | model | GT'
                files.append((what, osp.join(root, COMPARISON_FILE)))
        except (OSError, ValueError, RuntimeError) as err:
            logger.warning(f'could not draw the pictures in {root}: {type(err).__name__}: {err}')
    log_summary(logger, opt, model, progress.history, bicubic, files, progress.wall_time(), current_iter)


def _train(root_path, argv, stop, start_fresh, faults):
    from basicsr.utils import get_env_info, get_root_logger, get_time_str
    from basicsr.utils.options import dict2str

    from .options import parse_train_options

    # parse options, set distributed setting, set random seed
    opt, args = parse_train_options(root_path, argv)
    opt['root_path'] = root_path
    torch.backends.cudnn.benchmark = True

    # load resume states if necessary, and check everything before anything is written
    notes = []  # logged once BasicSR's logger exists (it needs the experiment folder)
    resume_path, resume_state = find_resume_state(opt, notes, start_fresh)
    notes += [('warning', w) for w in preflight(opt, resume_state)]

    # mkdir for experiments and logger; from here on a SIGTERM saves and exits instead of exiting at once
    stop.defer()
    make_experiment(opt, args, resume_path, resume_state, notes)
    log_file = osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    with run_log_file(logger, log_file, opt['rank']):
        logger.info(get_env_info())
        logger.info(dict2str(opt))
        for level, note in notes:
            getattr(logger, level)(note)
        tb_logger = init_tb_loggers(opt, logger)
        try:
            return _run(opt, resume_state, stop, faults, logger, tb_logger)
        finally:
            if tb_logger:
                tb_logger.close()


def _run(opt, resume_state, stop, faults, logger, tb_logger):
    # create train and validation dataloaders
    train_loader, train_sampler, val_loaders, _ = create_train_val_dataloader(opt, logger)
    total_iters = int(opt['train']['total_iter'])

    # create model: verified checkpoints, guarded optimizer steps, optional mixed precision
    extra = (resume_state or {}).get(STATE_KEY) or {}
    precision = build_precision(opt, 'cuda' if opt['num_gpu'] != 0 else 'cpu')
    guard = StepGuard(int(opt['train'].get('max_bad_steps', 10)), logger, skipped=extra.get('skipped_steps', 0),
                      scaler=precision.scaler if precision else None)
    writer = CheckpointWriter(opt['path']['experiments_root'], faults)
    model = build_training_model(opt, writer, guard, logger)
    if precision:
        precision.attach(model)
        precision.load_state_dict(extra.get('amp'))
        logger.info(precision.describe())
    start_epoch, current_iter, epoch_iter = 0, 0, 0
    if resume_state is not None:  # resume training: optimizers and schedulers (weights via check_resume)
        model.resume_training(resume_state)
        start_epoch, current_iter = resume_state['epoch'], resume_state['iter']
        if extra:
            epoch_iter = extra['epoch_iter']
            set_rng_states(extra['rng'])
        else:
            logger.warning('This state was written by BasicSR itself: the epoch restarts from its first '
                           'batch and RNG states are not restored (resume is not exact).')
        logger.info(f'Resuming training from epoch: {start_epoch}, iter: {current_iter}.')
    if stop.agreed(opt):
        logger.info('SIGTERM before the first iteration: nothing to save; exiting.')
        return {'stopped_at': current_iter, 'preempted': True}

    # training
    logger.info(f'Start training from epoch: {start_epoch}, iter: {current_iter}')
    progress = Progress(opt, current_iter, total_iters, logger, tb_logger)
    batch, save_freq = opt['datasets']['train']['batch_size_per_gpu'], opt['logger']['save_checkpoint_freq']
    val_opt = opt.get('val')
    saved = [current_iter] if resume_state is not None else []  # iterations with a checkpoint on disk
    epoch = start_epoch
    with progress:
        while current_iter < total_iters:
            train_sampler.set_epoch(epoch, skip=epoch_iter * batch)
            prefetcher = make_prefetcher(train_loader, opt)
            train_data = prefetcher.next()
            while train_data is not None and current_iter < total_iters:
                progress.data_loaded()
                current_iter += 1
                epoch_iter += 1
                guard.current_iter = current_iter
                # update learning rate
                model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
                # training
                model.feed_data(train_data)
                with precision or contextlib.nullcontext():
                    model.optimize_parameters(current_iter)
                faults.reached('after_step', current_iter)
                # log; stop if the steps went bad
                progress.iteration_done(epoch, current_iter, model)
                guard.check(current_iter, saved, opt['path']['models'], model.get_current_learning_rate()[0])
                # save models and training states (none while the last step was skipped); SIGTERM: save and stop
                preempt = stop.agreed(opt)
                if current_iter % save_freq == 0 or preempt:
                    if guard.consecutive == 0:
                        save_checkpoint(model, writer, opt, epoch, current_iter,
                                        {'epoch_iter': epoch_iter, 'rng': get_rng_states(),
                                         'skipped_steps': guard.skipped,
                                         'amp': precision.state_dict() if precision else None}, logger)
                        saved.append(current_iter)
                    else:
                        logger.warning(f'iter {current_iter}: no checkpoint written: the last step was skipped '
                                       'as non-finite.')
                if preempt:
                    logger.info(f'SIGTERM: {"saved" if saved[-1:] == [current_iter] else "no checkpoint at"} iter '
                                f'{current_iter}; exiting. Resume with --auto_resume.')
                    return {'stopped_at': current_iter, 'preempted': True}
                # validation (the last iteration's is the final validation below)
                if val_opt is not None and current_iter % val_opt['val_freq'] == 0 and current_iter < total_iters:
                    validate(model, val_loaders, current_iter, tb_logger, opt, progress)
                progress.iter_start()
                train_data = prefetcher.next()
            if train_data is None:  # epoch finished
                epoch += 1
                epoch_iter = 0

    logger.info(f'End of training. Time consumed: {progress.wall_time()}')
    if guard.skipped:
        logger.info(f'{guard.skipped} optimizer step(s) were skipped for non-finite gradients.')
    if opt['dist']:
        check_ranks_agree(model, opt, logger)
    logger.info('Save the latest model.')
    save_checkpoint(model, writer, opt, epoch, -1, None, logger)
    if val_opt is not None:
        validate(model, val_loaders, current_iter, tb_logger, opt, progress)
    if opt['rank'] == 0:
        finish(model, val_loaders, opt, progress, logger, current_iter)
    return {'stopped_at': current_iter, 'preempted': False, 'model': model}

