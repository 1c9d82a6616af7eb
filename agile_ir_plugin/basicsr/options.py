"""Option parsing for tools/train.py and tools/test.py: BasicSR's ``parse_options`` (same CLI:
``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``, ``--local_rank``, ``--force_yml``), after
handing the options' ``dist_params`` to the compat ``init_dist`` (BasicSR forwards them only for
slurm) so ``dist_params: {backend: gloo}`` works under torchrun too."""
import sys

from .. import compat


def _peek_yaml(argv):
    import yaml
    if '-opt' not in argv:
        return {}
    i = argv.index('-opt')
    if i + 1 >= len(argv):
        return {}
    path = argv[i + 1]
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise SystemExit(f'Options file not found: {path}') from None
    except yaml.YAMLError as err:
        raise SystemExit(f'Options file {path} is not valid YAML: {err}') from None


def _parse(root_path, is_train):
    from basicsr.utils.options import parse_options
    raw = _peek_yaml(sys.argv[1:])
    compat.DIST_PARAMS.clear()
    compat.DIST_PARAMS.update(raw.get('dist_params') or {})
    return parse_options(root_path, is_train=is_train)


def parse_train_options(root_path):
    return _parse(root_path, True)


def parse_test_options(root_path):
    return _parse(root_path, False)
