"""One preflight for ``train``, ``test`` and ``leaderboard``: every problem of the options, data,
checkpoints and output folders, reported at once, before anything is created, moved or archived.

``run_preflight(opt, tool, resume_state=None)`` returns warning lines and raises
:class:`PreflightError` (``.problems``: one line each; the commands print each as ``error: <line>``
and exit 1).  Checked:

- option keys against the declared schema (``option_schema``); a key close to a valid one is an
  error naming it; typed sections (``network_*``, optimizers, scheduler, losses, metrics) against the
  signature of the class they build; required keys (``train.total_iter``, batch size, ...);
- values: optimizers and the scheduler are built on a dummy parameter (torch's own checks: negative
  lr, betas ...), sizes and frequencies are positive integers, cosine periods cover ``total_iter``;
- the network is built once; ``path.pretrain_network_<net>`` must fit it exactly (a checkpoint of
  another scale is refused unless ``train.resize_pretrain_<net>: true`` asks for ESC's x2 -> x3/x4
  resize; a partial load is refused in test and leaderboard); a state being resumed must fit the
  network options;
- the data (``preflight_data``), the output folders (writable) and free disk for one checkpoint.
"""
import os
import shutil
from copy import deepcopy
from os import path as osp

from ..checkpoint import (SCALE_KEYS, CheckpointError, clean_message, describe_mismatch, diff_state_dict,
                          extract_state_dict, infer_scale, load_checkpoint, weight_sets)
from .preflight_data import InputError, check_datasets
from .preflight_options import (Findings, _check_typed, _no_such, _registry_get, check_keys, check_required,
                                check_training_values)

TOOLS = ('train', 'test', 'leaderboard')
free_bytes = shutil.disk_usage  # a seam for tests (disk_usage(path).free)


class PreflightError(InputError):
    """Everything wrong with a run's inputs; ``problems`` holds one line each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__('\n'.join(self.problems))


# ---------------------------------------------------------------------------------------------
# The network, its pretrained weights, the state being resumed
# ---------------------------------------------------------------------------------------------
def _build(net_opt, **override):
    from basicsr.utils.registry import ARCH_REGISTRY
    kwargs = deepcopy({**net_opt, **override})
    return ARCH_REGISTRY.get(kwargs.pop('type'))(**kwargs)


def build_networks(opt, f):
    """{network name: (options, module)}: each built once, for every later check."""
    from basicsr.utils.registry import ARCH_REGISTRY
    nets = {}
    for key, net_opt in opt.items():
        if not key.startswith('network_'):
            continue
        if not isinstance(net_opt, dict) or 'type' not in net_opt:
            f.error(f'{key}: expected a section with a type (the arch name), got {net_opt!r}.')
            continue
        cls = _registry_get(ARCH_REGISTRY, net_opt['type'])
        if cls is None:
            _no_such(f, f'{key}.type', 'arch', net_opt['type'], [n for n, _ in ARCH_REGISTRY])
            continue
        before = len(f.problems)
        _check_typed(f, key, net_opt, cls)
        if len(f.problems) > before:
            continue
        try:
            nets[key[len('network_'):]] = (net_opt, _build(net_opt))
        except Exception as err:  # the arch's own argument checks
            f.error(f'{key}: {net_opt["type"]} cannot be built from these options: {type(err).__name__}: '
                    f'{clean_message(err)}.')
    return nets


def _scale_key(net_opt):
    return next((k for k in SCALE_KEYS if k in net_opt), None)


def check_pretrained(opt, tool, nets, f):
    paths = opt.get('path') or {}
    for name, (net_opt, net) in nets.items():
        ckpt_path = paths.get(f'pretrain_network_{name}')
        where = f'path.pretrain_network_{name}'
        if not ckpt_path:
            if tool != 'train':
                f.warn(f'{where}: not set: network_{name} is evaluated with random weights.')
            continue
        strict = paths.get(f'strict_load_{name}', True)
        param_key = paths.get(f'param_key_{name}', 'params')
        resize = (opt.get('train') or {}).get(f'resize_pretrain_{name}', False) is True
        try:
            ckpt = load_checkpoint(ckpt_path)
            if tool == 'leaderboard':  # loaded through the converter: any layout
                sd = extract_state_dict(ckpt, param_key, ckpt_path)[0]
            else:  # loaded by BasicSR's load_network: ckpt[param_key], or the whole dict for param_key ~
                sd = _basicsr_weights(ckpt, param_key, ckpt_path, name)
        except CheckpointError as err:
            f.error(f'{where}: {err}')
            continue
        _compare(f, where, f'{ckpt_path!r} [{param_key}]', name, net_opt, net, sd, tool, strict, resize)


def _basicsr_weights(ckpt, param_key, path, name):
    sets = weight_sets(ckpt, path)
    have = ', '.join(k or 'a bare state dict' for k in sets)
    basicsr_layout = isinstance(ckpt, dict) and any(k in ckpt for k in ('params', 'params_ema'))
    bare = '' in sets and not any(k in ckpt for k in ('state_dict', 'ema_state_dict', 'model'))
    if param_key is None and bare:
        return sets['']
    if param_key is not None and basicsr_layout and param_key in sets:
        return sets[param_key]
    if not basicsr_layout and not bare:
        fix = ("convert it to BasicSR's layout first (agile_ir_plugin.checkpoint.convert_checkpoint(src, dst, "
               "to='basicsr'))")
    elif bare:
        fix = f'set path.param_key_{name}: ~ (the file is a bare state dict)'
    else:
        fix = f'set path.param_key_{name} to one of those'
    raise CheckpointError(f'{path!r} has no {param_key!r} weights that BasicSR can load (it holds {have}); {fix}.')


def _resizes_to(net, sd):
    """True when ``net`` can resize a checkpoint of another scale (ESC, ESCFP: ``resize_state_dict``)
    and ``sd`` fits it after that."""
    if not hasattr(net, 'resize_state_dict'):
        return False
    return not any(diff_state_dict(net.state_dict(), net.resize_state_dict(sd)))


def _compare(f, where, what, name, net_opt, net, sd, tool, strict, resize):
    expected = net.state_dict()
    if not any(diff_state_dict(expected, sd)):
        if resize:
            f.warn(f'train.resize_pretrain_{name}: the checkpoint is already x{net_opt.get(_scale_key(net_opt))}: '
                   'nothing to resize.')
        return
    key = _scale_key(net_opt)
    other = infer_scale(lambda s: _build(net_opt, **{key: s}), sd, net_opt[key]) if key else None
    if other is not None:
        s = net_opt[key]
        line = f'{where}: {what} is a x{other} checkpoint, the options say x{s} (network_{name}.{key})'
        if resize and tool == 'train' and _resizes_to(net, sd):
            f.warn(line + f': resized on load as train.resize_pretrain_{name} asks.')
            return
        if resize and tool == 'train':
            f.error(line + f'; train.resize_pretrain_{name} asks for a resize, which {net_opt["type"]} cannot do '
                           '(ESC and ESCFP can).')
        elif tool == 'train':
            f.error(line + f'; use a x{s} checkpoint, or set train.resize_pretrain_{name}: true to start from it '
                           'with the upsampler resized (the paper\'s x2 -> x3/x4 recipe).')
        else:
            f.error(line + f'; evaluate it with x{other} options, or use a x{s} checkpoint.')
        return
    detail = describe_mismatch(expected, sd)
    line = f'{where}: {what} does not fit network_{name} ({net_opt["type"]}): {detail}'
    if strict is False and tool == 'train':
        f.warn(line + f' (loaded non-strictly: path.strict_load_{name} is false).')
    elif strict is False:
        f.error(line + f'; a {tool} of a partially loaded network gives wrong numbers: use the checkpoint of '
                       'these network options.')
    else:
        f.error(line + '; the network options (depths, dims, heads, upsampler ...) differ from those it was '
                       'trained with.')


def check_resume(opt, resume_state, nets, f):
    """The weights of the state being resumed must fit the network options as they are now."""
    models = (opt.get('path') or {}).get('models') or ''
    for name, (net_opt, net) in nets.items():
        path = osp.join(models, f'net_{name}_{resume_state["iter"]}.pth')
        if not osp.isfile(path):
            continue  # the resume logic reports missing weights
        try:
            sd = weight_sets(load_checkpoint(path), path).get('params')
        except CheckpointError as err:
            f.error(f'resume: {err}')
            continue
        problem = describe_mismatch(net.state_dict(), sd or {})
        if problem:
            f.error(f'network_{name}: the options no longer match the state being resumed (iter '
                    f'{resume_state["iter"]}, {path}): {problem}; restore the network options it was trained '
                    'with, or train under a new name.')


# ---------------------------------------------------------------------------------------------
# Output folders and disk
# ---------------------------------------------------------------------------------------------
def _existing_ancestor(path):
    path = osp.abspath(path)
    while not osp.exists(path):
        path = osp.dirname(path)
    return path


def check_output(f, where, folder, need=0):
    base = _existing_ancestor(folder)
    if not osp.isdir(base):
        f.error(f'{where}: cannot create {folder}: {base} is a file, not a folder.')
    elif not os.access(base, os.W_OK | os.X_OK):
        f.error(f'{where}: cannot write {folder}: {base} is not writable by this user; run from a writable '
                'folder or fix its permissions.')
    elif need:
        free = free_bytes(base).free
        if free < need:
            f.error(f'{where}: {free / 2**20:.1f} MiB free on the disk of {base}, one checkpoint of this network '
                    f'needs about {need / 2**20:.1f} MiB; free some space or train elsewhere.')


def checkpoint_bytes(opt, nets):
    """Bytes one save writes: each network's weights (twice with EMA) and the training state (the
    optimizer's moments: 2 x the parameters of an Adam-like optimizer), plus 1 MiB."""
    params = sum(p.numel() * p.element_size() for _, net in nets.values() for p in net.parameters())
    ema = 2 if (opt.get('train') or {}).get('ema_decay', 0) else 1
    return params * (ema + 2) + 2**20


def run_preflight(opt, tool='train', resume_state=None, out_dir=None):
    """Every check for ``tool``; returns warnings, raises PreflightError listing every problem."""
    if tool not in TOOLS:
        raise ValueError(f'tool must be one of {TOOLS}, got {tool!r}')
    f = Findings()
    if not isinstance(opt, dict):
        raise PreflightError([f'options: expected a mapping of option keys, got {type(opt).__name__}.'])
    check_required(opt, tool, f)
    check_keys(opt, f)
    if tool == 'train':
        check_training_values(opt, f)
    nets = build_networks(opt, f)
    if tool != 'train' or resume_state is None:
        check_pretrained(opt, tool, nets, f)
    else:
        check_resume(opt, resume_state, nets, f)
    check_datasets(opt, f.problems, f.warnings, phases=None if tool == 'train' else {'test', 'val'})
    paths = opt.get('path') if isinstance(opt.get('path'), dict) else {}
    if tool == 'train' and paths.get('experiments_root'):
        check_output(f, 'experiments', paths['experiments_root'], need=checkpoint_bytes(opt, nets))
        if (opt.get('logger') or {}).get('use_tb_logger') and opt.get('root_path'):
            check_output(f, 'logger.use_tb_logger', osp.join(opt['root_path'], 'tb_logger'))
    if tool == 'test' and paths.get('results_root'):
        check_output(f, 'results', paths['results_root'])
    if out_dir is not None:
        check_output(f, '--out', out_dir)
    if f.problems:
        raise PreflightError(f.problems)
    return f.warnings
