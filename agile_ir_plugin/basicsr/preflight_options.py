"""Preflight of the options themselves: keys against the declared schema (``option_schema``),
required keys, and values (optimizers and the scheduler built on a dummy parameter, so torch's
and BasicSR's own checks speak before training starts).  Used by ``preflight.run_preflight``."""
import inspect

from ..checkpoint import clean_message
from .option_schema import valid_keys
from .preflight_data import _closest


class Findings:
    def __init__(self):
        self.problems, self.warnings = [], []

    def error(self, line):
        self.problems.append(line)

    def warn(self, line):
        self.warnings.append(line)


def _signature(cls):
    """(keyword names, accepts **kwargs) of a class or callable."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in sig.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ('self', 'optimizer', 'params')}
    return names, any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def _unknown(f, where, key, valid, var_kw=False):
    guess = _closest(key, valid, cutoff=0.75)
    if guess:
        f.error(f"{where}{key}: unknown option; did you mean '{guess}'?")
    elif not var_kw:
        f.warn(f'{where}{key}: no component of BasicSR or this plugin reads this option (ignored).')


def _check_section(f, where, section, valid, prefixes=(), suffixes=()):
    for key in section:
        if key not in valid and not key.startswith(tuple(prefixes)) and not key.endswith(tuple(suffixes)):
            _unknown(f, where, key, valid | {p.rstrip('_') for p in prefixes})


def _check_typed(f, where, section, cls):
    names, var_kw = _signature(cls)
    name = getattr(cls, '__name__', str(cls))
    for key in section:
        if key == 'type' or key in names:
            continue
        guess = _closest(key, names, cutoff=0.75)
        if guess:
            f.error(f"{where}.{key}: {name} has no option '{key}'; did you mean '{guess}'?")
        elif not var_kw:
            f.error(f"{where}.{key}: {name} has no option '{key}'; its options are: {', '.join(sorted(names))}.")


def _registry_get(registry, name):
    try:
        return registry.get(name)
    except KeyError:
        return None


# ---------------------------------------------------------------------------------------------
# Option keys and values
# ---------------------------------------------------------------------------------------------
def _init_process_group():
    import torch.distributed
    return torch.distributed.init_process_group


def check_keys(opt, f):
    from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY
    nets = [k[len('network_'):] for k in opt if k.startswith('network_')]
    _check_section(f, '', opt, valid_keys('top'), prefixes=('network_',))
    for phase, ds in (opt.get('datasets') or {}).items():
        if isinstance(ds, dict):
            _check_section(f, f'datasets.{phase}.', ds, valid_keys('dataset'))
            if isinstance(ds.get('io_backend'), dict):
                _check_section(f, f'datasets.{phase}.io_backend.', ds['io_backend'], valid_keys('io_backend'))
    per_net = {p + n for p in valid_keys('path_prefixes') for n in nets}  # pretrain_network_g, ...
    extra = {'path': per_net, 'dist_params': _signature(_init_process_group())[0]}
    for section in ('path', 'val', 'logger', 'dist_params'):
        if isinstance(opt.get(section), dict):
            _check_section(f, f'{section}.', opt[section], valid_keys(section) | extra.get(section, set()))
    if isinstance((opt.get('logger') or {}).get('wandb'), dict):
        _check_section(f, 'logger.wandb.', opt['logger']['wandb'], valid_keys('wandb'))
    train = opt.get('train') if isinstance(opt.get('train'), dict) else {}
    train_per_net = {p + n for p in valid_keys('train_net_prefixes') for n in nets}  # resize_pretrain_g
    _check_section(f, 'train.', train, valid_keys('train') | train_per_net, prefixes=valid_keys('train_prefixes'),
                   suffixes=valid_keys('train_suffixes'))
    for key, sub in train.items():
        if key.endswith('_opt') and isinstance(sub, dict) and 'type' in sub:
            cls = _registry_get(LOSS_REGISTRY, sub['type'])
            if cls is None:
                _no_such(f, f'train.{key}.type', 'loss', sub['type'], [n for n, _ in LOSS_REGISTRY])
            else:
                _check_typed(f, f'train.{key}', sub, cls)
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        if isinstance(metric, dict) and 'type' in metric:
            cls = _registry_get(METRIC_REGISTRY, metric['type'])
            if cls is None:
                _no_such(f, f'val.metrics.{name}.type', 'metric', metric['type'], [n for n, _ in METRIC_REGISTRY])
            else:
                _check_typed(f, f'val.metrics.{name}', {k: v for k, v in metric.items() if k != 'better'}, cls)


def _no_such(f, where, what, name, known):
    guess = _closest(str(name), known, cutoff=0.6)
    f.error(f"{where}: no {what} named '{name}'" + (f"; did you mean '{guess}'?" if guess else '.'))


def _get(opt, dotted):
    node = opt
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _positive_int(f, opt, dotted, minimum=1, required=True):
    value = _get(opt, dotted)
    if value is KeyError or value is None:
        if required:
            f.error(f'{dotted}: required, missing; set it to an integer >= {minimum}.')
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        f.error(f'{dotted}: expected an integer >= {minimum}, got {value!r}.')


def check_required(opt, tool, f):
    if not opt.get('name'):
        f.error('name: required, missing; name the experiment (its folders are named after it).')
    if not any(k.startswith('network_') for k in opt):
        f.error('network_g: required, missing; describe the network (type and arguments).')
    datasets = opt.get('datasets')
    phases = {k.split('_')[0] for k in (datasets or {})}
    if tool == 'train':
        if 'model_type' not in opt:
            f.error('model_type: required, missing; e.g. SRModel or ImageRestorationModel.')
        if 'train' not in phases:
            f.error("datasets.train: required, missing; the options have no 'datasets: train:' section.")
        else:
            _positive_int(f, opt, 'datasets.train.batch_size_per_gpu')
            _positive_int(f, opt, 'datasets.train.num_worker_per_gpu', minimum=0)
            _positive_int(f, opt, 'datasets.train.dataset_enlarge_ratio', required=False)
            _positive_int(f, opt, 'datasets.train.gt_size', required=False)
        if not isinstance(opt.get('train'), dict):
            f.error('train: required, missing; the section with total_iter, optim_g, scheduler and losses.')
        else:
            _positive_int(f, opt, 'train.total_iter')
            _positive_int(f, opt, 'train.max_bad_steps', required=False)
            amp = opt['train'].get('amp')
            if amp not in (None, False, 'fp32', 'bf16', 'fp16'):
                f.error(f'train.amp: expected one of fp32, bf16, fp16 (or no key), got {amp!r}.')
            decay = opt['train'].get('ema_decay', 0)
            if not isinstance(decay, (int, float)) or not 0 <= decay < 1:
                f.error(f'train.ema_decay: expected a number in [0, 1), got {decay!r}.')
        _positive_int(f, opt, 'logger.print_freq')
        _positive_int(f, opt, 'logger.save_checkpoint_freq')
        if isinstance(opt.get('val'), dict):
            _positive_int(f, opt, 'val.val_freq')
    elif tool == 'test':
        if 'model_type' not in opt:
            f.error('model_type: required, missing; e.g. SRModel or ImageRestorationModel.')
        if not phases & {'test', 'val'}:
            f.error('datasets: expected at least one test_* or val_* dataset, got none.')
    if tool != 'leaderboard' and not isinstance(opt.get('path', {}), dict):
        f.error(f'path: expected a section of paths, got {opt.get("path")!r}.')


def check_training_values(opt, f):
    """Optimizers and the scheduler, built as BasicSR will build them, on a dummy parameter."""
    import torch
    train = opt.get('train') if isinstance(opt.get('train'), dict) else {}
    optimizer = None
    for key, sub in train.items():
        if not (key.startswith('optim_') and isinstance(sub, dict)):
            continue
        kwargs = {k: v for k, v in sub.items() if k != 'type'}
        name = sub.get('type')
        cls = getattr(torch.optim, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            _no_such(f, f'train.{key}.type', 'optimizer in torch.optim', name, dir(torch.optim))
            continue
        strings = [k for k, v in kwargs.items() if isinstance(v, str)]
        for k in strings:
            f.error(f'train.{key}.{k}: expected a number, got the string {kwargs[k]!r} (YAML reads 5e-4 as a '
                    'string: write 5.0e-4 or !!float 5e-4).')
        names, _ = _signature(cls)
        if strings or set(kwargs) - names:
            _check_typed(f, f'train.{key}', sub, cls)
            continue
        try:
            optimizer = cls([torch.zeros(1, requires_grad=True)], **kwargs)
        except (ValueError, TypeError) as err:
            f.error(f'train.{key}: {name} refuses these values: {clean_message(err)}.')
    sched = train.get('scheduler')
    if isinstance(sched, dict) and optimizer is not None:
        _check_scheduler(f, sched, optimizer, train.get('total_iter'))


def _check_scheduler(f, sched, optimizer, total_iter):
    from basicsr.models import lr_scheduler as basicsr_sched

    from .models.lr_scheduler import SCHEDULERS
    name = sched.get('type')
    known = {**SCHEDULERS, 'MultiStepLR': basicsr_sched.MultiStepRestartLR,
             'MultiStepRestartLR': basicsr_sched.MultiStepRestartLR,
             'CosineAnnealingRestartLR': basicsr_sched.CosineAnnealingRestartLR}
    cls = known.get(name)
    if cls is None:
        _no_such(f, 'train.scheduler.type', 'scheduler', name, list(known))
        return
    kwargs = {k: v for k, v in sched.items() if k != 'type'}
    names, _ = _signature(cls)
    if set(kwargs) - names:
        _check_typed(f, 'train.scheduler', sched, cls)
        return
    try:
        cls(optimizer, **kwargs)
    except (ValueError, TypeError, AssertionError, KeyError, IndexError, ZeroDivisionError) as err:
        f.error(f'train.scheduler: {name} refuses these values: {clean_message(err) or type(err).__name__}.')
        return
    periods = kwargs.get('periods')
    if isinstance(periods, (list, tuple)) and isinstance(total_iter, int) and sum(periods) < total_iter:
        f.error(f'train.scheduler.periods: they cover {sum(periods)} iterations, train.total_iter is {total_iter}; '
                f'the schedule ends before training does (make the periods sum to at least {total_iter}).')
