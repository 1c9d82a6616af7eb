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
        raise SystemExit(f'error: options file not found: {path}') from None
    except yaml.YAMLError as err:
        raise SystemExit(f'error: options file {path} is not valid YAML: {" ".join(str(err).split())}') from None


def _parse(root_path, is_train, argv=None):
    """BasicSR's ``parse_options`` on ``argv`` (default ``sys.argv[1:]``; BasicSR reads sys.argv)."""
    from basicsr.utils.options import parse_options
    argv = sys.argv[1:] if argv is None else list(argv)
    raw = _peek_yaml(argv)
    compat.DIST_PARAMS.clear()
    compat.DIST_PARAMS.update(raw.get('dist_params') or {})
    saved = sys.argv
    sys.argv = [saved[0] if saved else 'train.py', *argv]
    try:
        return parse_options(root_path, is_train=is_train)
    finally:
        sys.argv = saved


def parse_train_options(root_path, argv=None):
    return _parse(root_path, True, argv)


def parse_test_options(root_path, argv=None):
    return _parse(root_path, False, argv)
