"""Preflight of the MMagic entry points (:mod:`.runner`'s ``train_main`` / ``test_main``).

mmengine's Runner creates ``work_dir/<timestamp>/`` first and finds a missing dataset folder or
checkpoint later, as a traceback from inside mmengine or the dataset.  :func:`check_config` looks
at the config before the Runner is built and returns one line per problem; the runner raises the
BasicSR preflight's :class:`~agile_ir_plugin.basicsr.preflight.PreflightError` with them, which the
commands print as ``error: <line>`` (exit 1).  Checked, for the dataloaders the mode builds
(train: ``train_dataloader``, and ``val_dataloader`` when ``val_cfg`` is set; test:
``test_dataloader``, one or a list):

- each dataset's ``data_root``, its ``data_prefix`` folders and its ``ann_file``, resolved as
  mmengine's ``BaseDataset`` does (a relative prefix / ann_file is joined to ``data_root``); keys
  the config leaves out take the dataset class's defaults; wrappers (``dataset`` /``datasets``)
  are followed;
- the checkpoint: ``load_from`` (``--resume CKPT``, test's ``CHECKPOINT``) is a file;
- the work_dir (its nearest existing parent) is a writable folder, and so is test's ``--out``.

Remote paths (``s3://``, ``http://`` ...) and datasets with a non-local ``backend_args`` are left
to their backends.
"""
import inspect
import os.path as osp

from ..basicsr.preflight import PreflightError, check_output
from ..basicsr.preflight_options import Findings

__all__ = ['PreflightError', 'check_config', 'config_problem', 'one_line']

MODES = ('train', 'test')
_WRAPPER_KEYS = ('dataset', 'datasets')


def _remote(path):
    return '://' in str(path)


def one_line(err):
    return ' '.join(str(err).split())


def config_problem(path, err):
    """The problem line for a config that cannot be loaded (``Config.fromfile`` raised ``err``)."""
    if not osp.exists(path):
        return f'{path}: no such config file (expected an mmengine .py config, e.g. ' \
               'configs/esc/esc_x4c64b5_4xb16-500k_div2k.py).'
    if osp.isdir(path):
        return f'{path}: is a folder, expected an mmengine .py config file.'
    return f'{path}: cannot be loaded as an mmengine config: {type(err).__name__}: {one_line(err)}'


def _class_defaults(kind):
    """Defaults of the dataset class ``kind`` names (``data_root``, ``data_prefix``, ``ann_file``)."""
    from mmagic.registry import DATASETS
    cls = kind if inspect.isclass(kind) else DATASETS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return {}
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _check_dataset(f, config, where, ds):
    if not isinstance(ds, dict):
        return
    if isinstance(ds.get('dataset'), dict):
        _check_dataset(f, config, f'{where}.dataset', ds['dataset'])
    if isinstance(ds.get('datasets'), (list, tuple)):
        for i, sub in enumerate(ds['datasets']):
            _check_dataset(f, config, f'{where}.datasets[{i}]', sub)
    if any(k in ds for k in _WRAPPER_KEYS) or (ds.get('backend_args') or {}).get('backend', 'local') != 'local':
        return
    defaults = _class_defaults(ds.get('type'))
    kind = ds.get('type', 'the dataset')
    kind = kind.__name__ if inspect.isclass(kind) else kind
    root = ds.get('data_root', defaults.get('data_root')) or ''
    if _remote(root):
        return
    root_missing = bool(root) and not osp.isdir(root)
    if root_missing:
        f.error(f'{config}: {where}.data_root: no folder {root!r} ({kind} reads data_root/data_prefix); '
                'set data_root in the config to where the data is.')

    def resolve(path):  # BaseDataset._join_prefix; None when under the missing data_root
        if osp.isabs(path) or not root:
            return path
        return None if root_missing else osp.join(root, path)

    prefixes = ds.get('data_prefix', defaults.get('data_prefix')) or {}
    for key, prefix in (prefixes.items() if isinstance(prefixes, dict) else ()):
        if not isinstance(prefix, str):
            f.error(f'{config}: {where}.data_prefix.{key}: expected a folder name (str), got {prefix!r}.')
            continue
        path = resolve(prefix)
        if path and not _remote(path) and not osp.isdir(path):
            f.error(f'{config}: {where}.data_prefix.{key}: no folder {path!r} (data_root + data_prefix[{key!r}]); '
                    'fix data_prefix or data_root in the config.')
    ann_file = ds.get('ann_file', defaults.get('ann_file')) or ''
    path = resolve(ann_file) if isinstance(ann_file, str) and ann_file else None
    if path and not _remote(path) and not osp.isfile(path):
        f.error(f'{config}: {where}.ann_file: no file {path!r} (data_root + ann_file); fix ann_file or data_root '
                'in the config.')


def _check_loaders(f, cfg, config, key):
    loaders = cfg.get(key)
    many = isinstance(loaders, (list, tuple))
    for i, loader in enumerate(loaders if many else [loaders]):
        if isinstance(loader, dict):
            _check_dataset(f, config, f'{key}[{i}].dataset' if many else f'{key}.dataset', loader.get('dataset'))


def _check_checkpoint(f, where, path):
    if not path or _remote(path) or osp.isfile(path):
        return
    what = 'is a folder' if osp.isdir(path) else 'does not exist'
    f.error(f'{where}: the checkpoint {path!r} {what}; expected a .pth file saved by mmengine '
            '(work_dir/iter_N.pth) or a converted one.')


def check_config(cfg, args, mode):
    """Problems (one line each) of ``cfg`` for ``mode`` ('train' | 'test'); ``[]`` when it can run.

    ``args``: the parsed command line of :mod:`.runner` (``config``, ``resume`` / ``checkpoint``,
    ``out``); ``cfg``: the config with the command line applied (``load_from`` included)."""
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    f = Findings()
    config = args.config
    if mode == 'train':
        _check_loaders(f, cfg, config, 'train_dataloader')
        if cfg.get('val_cfg') and cfg.get('val_dataloader'):
            _check_loaders(f, cfg, config, 'val_dataloader')
        resume = getattr(args, 'resume', None)
        where = '--resume' if resume not in (None, 'auto') else f'{config}: load_from'
    else:
        _check_loaders(f, cfg, config, 'test_dataloader')
        where = 'CHECKPOINT'
    _check_checkpoint(f, where, cfg.get('load_from'))
    check_output(f, 'work_dir', cfg.work_dir)
    if getattr(args, 'out', None):
        check_output(f, '--out', osp.dirname(osp.abspath(args.out)))
    return f.problems

