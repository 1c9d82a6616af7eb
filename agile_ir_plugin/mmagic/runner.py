"""MMagic's ``tools/train.py`` and ``tools/test.py`` on the mmengine Runner, for our configs.

``tools/train.py`` / ``tools/test.py`` call :func:`train_main` / :func:`test_main` when their first
argument is a ``.py`` config; the flags are MMagic 1.2.0's:

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out metrics.json]
                          [--cfg-options k=v ...] [--launcher ...]
    torchrun --nproc_per_node=4 tools/train.py CONFIG --launcher pytorch

Before the Runner is built (it creates ``work_dir/<timestamp>/`` at once), :mod:`.preflight` checks
the config, data folders, checkpoint and work_dir: every problem is one ``error: ...`` line on
stderr, exit status 1, nothing written (the BasicSR commands' PreflightError and printer).

Importing this module imports :mod:`agile_ir_plugin.mmagic` (compat fixes, registration); without
the [mmagic] extra that raises :class:`~agile_ir_plugin.mmagic.MMagicNotInstalledError`, whose
message is the one line to print.
"""
import argparse
import logging
import os
import os.path as osp

from . import INSTALL_HINT, MMagicNotInstalledError  # noqa: F401  (fixes + registration first)

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from ..basicsr.preflight import PreflightError  # noqa: E402
from ..cli.test import error_exit  # noqa: E402
from .preflight import check_config, config_problem, one_line  # noqa: E402


def _common_arguments(parser):
    parser.add_argument('--work-dir', help='the directory to save logs, checkpoints and metrics')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs (e.g. train_cfg.max_iters=1000 '
             'train_dataloader.batch_size=8 "model.generator.dim=32")')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (torchrun: pytorch)')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def train_parser():
    parser = argparse.ArgumentParser(prog='tools/train.py', description='Train a model from an MMagic config.')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CKPT',
        help='resume training: from the latest checkpoint in the work dir, or from CKPT')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size / auto_scale_lr.base_batch_size')
    _common_arguments(parser)
    return parser


def test_parser():
    parser = argparse.ArgumentParser(prog='tools/test.py', description='Test (and evaluate) a model from an MMagic config.')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the metrics to this file (json/yaml/pkl)')
    _common_arguments(parser)
    return parser


def load_config(args):
    """The config with the command line applied, as MMagic's tools do (CLI > file > file name).

    A config that is missing or cannot be loaded raises PreflightError (one line)."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    try:
        cfg = Config.fromfile(args.config)
    except Exception as err:  # a missing file, a syntax error, a bad _base_ or custom_imports: mmengine's many types
        raise PreflightError([config_problem(args.config, err)]) from None
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        try:
            cfg.merge_from_dict(args.cfg_options)
        except Exception as err:
            raise PreflightError([f'--cfg-options: cannot be applied to {args.config}: {type(err).__name__}: '
                                  f'{one_line(err)}']) from None
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def _cpu_distributed(cfg):
    """torchrun on a machine without CUDA: gloo instead of the configs' nccl, and DDP on CPU.

    mmengine 0.10.7 assumes GPUs for `--launcher pytorch`: its _init_dist_pytorch calls
    torch.cuda.set_device (RuntimeError: Found no NVIDIA driver on your system) and its
    Runner.wrap_model passes device_ids=[LOCAL_RANK] to DistributedDataParallel, which a CPU
    module refuses.  The Runner skips its own init when a process group exists, and takes
    DDP arguments from `model_wrapper_cfg`: both are set here, nothing of mmengine is patched.
    """
    import torch
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'nccl')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo' if backend == 'nccl' else backend, **dist_cfg)
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters', False))


def _load(args):
    try:
        return load_config(args)
    except PreflightError as err:
        raise error_exit(err) from None


def _preflight(cfg, args, mode, problems=()):
    """Every problem (``problems`` and the preflight's): one ``error:`` line each, exit 1, nothing written."""
    problems = [*problems, *check_config(cfg, args, mode)]
    if problems:
        raise error_exit(PreflightError(problems)) from None


def _apply_train_flags(cfg, args):
    """--amp, --auto-scale-lr and --resume applied to ``cfg``; the lines of the flags that cannot apply."""
    problems = []
    for wanted, enable in ((args.amp, _enable_amp), (args.auto_scale_lr, _enable_auto_scale_lr)):
        if wanted:
            try:
                enable(cfg, args.config)
            except ValueError as err:
                problems.append(str(err))
    if args.resume is not None:
        cfg.resume = True
        if args.resume != 'auto':
            cfg.load_from = args.resume
    return problems


def _enable_amp(cfg, config_path=None):
    """--amp: OptimWrapper -> AmpOptimWrapper with a dynamic loss scale (as MMagic's train.py)."""
    from mmagic.utils import print_colored_log
    wrappers = [cfg.optim_wrapper]
    if cfg.optim_wrapper.get('constructor', 'DefaultOptimWrapperConstructor') != 'DefaultOptimWrapperConstructor':
        wrappers = [v for v in cfg.optim_wrapper.values() if isinstance(v, dict) and 'type' in v]
    for wrapper in wrappers:
        kind = wrapper.get('type', 'OptimWrapper')
        if kind == 'AmpOptimWrapper':
            print_colored_log('AMP training is already enabled in your config.', logger='current',
                              level=logging.WARNING)
        elif kind != 'OptimWrapper':
            raise ValueError(f'--amp needs optimizer wrappers of type OptimWrapper, got {kind}.')
        else:
            wrapper['type'] = 'AmpOptimWrapper'
            wrapper['loss_scale'] = 'dynamic'


def _enable_auto_scale_lr(cfg, config_path):
    scale = cfg.get('auto_scale_lr', None)
    if not scale or 'base_batch_size' not in scale:
        raise ValueError(f'--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=N)` in {config_path} '
                         '(N: the global batch size its learning rate is meant for).')
    cfg.auto_scale_lr.enable = True


def train_main(argv=None):
    """``tools/train.py CONFIG ...``: build the mmengine Runner and train; returns 0."""
    args = train_parser().parse_args(argv)
    cfg = _load(args)
    _preflight(cfg, args, 'train', _apply_train_flags(cfg, args))

    from mmagic.utils import print_colored_log
    _cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    print_colored_log(f'Working directory: {cfg.work_dir}')
    print_colored_log(f'Log directory: {runner._log_dir}')
    runner.train()
    print_colored_log(f'Log saved under {runner._log_dir}')
    print_colored_log(f'Checkpoint saved under {cfg.work_dir}')
    return 0


class _DumpMetrics(Hook):
    """Writes the test metrics to a file (``--out``), on the main process."""
    priority = 'LOWEST'

    def __init__(self, path):
        self.path = path

    def after_test_epoch(self, runner, metrics=None):
        from mmengine.dist import is_main_process
        if metrics is not None and is_main_process():
            import mmengine
            mmengine.dump({k: float(v) for k, v in metrics.items()}, self.path)


def test_main(argv=None):
    """``tools/test.py CONFIG CHECKPOINT ...``: load the checkpoint and run the test sets; returns 0."""
    args = test_parser().parse_args(argv)
    cfg = _load(args)
    cfg.load_from = args.checkpoint
    _preflight(cfg, args, 'test')

    from mmagic.utils import print_colored_log
    _cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    print_colored_log(f'Working directory: {cfg.work_dir}')
    print_colored_log(f'Log directory: {runner._log_dir}')
    if args.out:
        runner.register_hook(_DumpMetrics(args.out), 'LOWEST')
    runner.test()
    return 0
