"""Option parsing for ``tools/train.py`` and ``tools/test.py``: BasicSR's ``parse_options`` (same
command line: ``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``, ``--local_rank``, ``--force_yml``)
on an explicit ``argv``, reading the YAML once.

Differences from BasicSR 1.4.2, each for a reason: the options' ``dist_params`` reach ``init_dist``
for every launcher (BasicSR forwards them only for slurm, so ``dist_params: {backend: gloo}`` was
ignored under torchrun); a missing or malformed file or section is one ``error:`` line, not a
``KeyError``; the rest (seed, ``--force_yml``, debug mode, dataset phases and scales, experiment
and result paths) is BasicSR's own code path, through its helpers.
"""
import argparse
import random
import sys
from os import path as osp


from .preflight_data import InputError


class OptionsError(InputError):
    """The options file or command line cannot be read; one line."""


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument('-opt', type=str, required=True, help='Path to option YAML file.')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    p.add_argument('--auto_resume', action='store_true')
    p.add_argument('--debug', action='store_true')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    p.add_argument('--force_yml', nargs='+', default=None,
                   help='Force to update yml files. Examples: train:ema_decay=0.999')
    return p


def read_options_file(path):
    """The YAML as BasicSR reads it (ordered); OptionsError naming the file otherwise."""
    import yaml
    from basicsr.utils.options import ordered_yaml
    try:
        with open(path) as f:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
    except FileNotFoundError:
        raise OptionsError(f'options file not found: {path}') from None
    except IsADirectoryError:
        raise OptionsError(f'options file {path} is a folder; pass the .yml file') from None
    except yaml.YAMLError as err:
        raise OptionsError(f'options file {path} is not valid YAML: {" ".join(str(err).split())}') from None
    if not isinstance(opt, dict):
        raise OptionsError(f'options file {path}: expected a mapping of option keys, got {type(opt).__name__}')
    return opt


def _force_yml(opt, entries):
    from basicsr.utils.options import _postprocess_yml_value
    for entry in entries:
        keys, sep, value = entry.partition('=')
        node = opt
        parts = keys.strip().split(':')
        try:
            for key in parts[:-1]:
                node = node[key]
            if not sep or parts[-1] not in node:  # BasicSR: "now do not support creating new keys"
                raise KeyError(parts[-1])
        except (KeyError, TypeError):
            raise OptionsError(f'--force_yml {entry}: expected KEY:SUBKEY=VALUE naming an existing option') from None
        node[parts[-1]] = _postprocess_yml_value(value.strip())


def parse_options(root_path, is_train, argv=None):
    """``(opt, args)`` exactly as BasicSR's ``parse_options`` builds them, from ``argv``."""
    import torch
    from basicsr.utils.dist_util import get_dist_info
    from basicsr.utils.misc import set_random_seed

    from ..compat import init_dist
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    opt = read_options_file(args.opt)
    if args.launcher == 'none':
        opt['dist'] = False
        print('Disable distributed.', flush=True)
    else:
        opt['dist'] = True
        init_dist(args.launcher, **(opt.get('dist_params') or {}))
    opt['rank'], opt['world_size'] = get_dist_info()
    if opt.get('manual_seed') is None:
        opt['manual_seed'] = random.randint(1, 10000)
    set_random_seed(opt['manual_seed'] + opt['rank'])
    if args.force_yml is not None:
        _force_yml(opt, args.force_yml)
    opt['auto_resume'] = args.auto_resume
    opt['is_train'] = is_train
    name = str(opt.get('name') or '')
    if args.debug and not name.startswith('debug'):
        opt['name'] = name = 'debug_' + name
    if opt.get('num_gpu', 'auto') == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()
    for phase, dataset in (opt.get('datasets') or {}).items():
        if not isinstance(dataset, dict):
            continue
        dataset['phase'] = phase.split('_')[0]
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
        for key in ('dataroot_gt', 'dataroot_lq'):
            if dataset.get(key) is not None:
                dataset[key] = osp.expanduser(dataset[key])
    opt.setdefault('path', {})
    if isinstance(opt['path'], dict):
        for key, val in opt['path'].items():
            if val is not None and ('resume_state' in key or 'pretrain_network' in key):
                opt['path'][key] = osp.expanduser(val)
        if is_train:
            root = osp.join(root_path, 'experiments', name)
            opt['path'].update(experiments_root=root, models=osp.join(root, 'models'), log=root,
                               training_states=osp.join(root, 'training_states'),
                               visualization=osp.join(root, 'visualization'))
            if 'debug' in name:
                if isinstance(opt.get('val'), dict):
                    opt['val']['val_freq'] = 8
                if isinstance(opt.get('logger'), dict):
                    opt['logger'].update(print_freq=1, save_checkpoint_freq=8)
        else:
            root = osp.join(root_path, 'results', name)
            opt['path'].update(results_root=root, log=root, visualization=osp.join(root, 'visualization'))
    return opt, args


def parse_train_options(root_path, argv=None):
    return parse_options(root_path, True, argv)


def parse_test_options(root_path, argv=None):
    return parse_options(root_path, False, argv)
