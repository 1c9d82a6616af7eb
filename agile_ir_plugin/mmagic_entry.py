"""Dispatch of tools/train.py and tools/test.py to MMagic's runner for ``.py`` configs.

Kept outside ``agile_ir_plugin.mmagic`` so that a missing MMagic install gives one clear line."""
import sys


def run(kind, argv):
    try:
        import mmagic  # noqa: F401
        import mmengine  # noqa: F401
    except ImportError as err:
        raise SystemExit(f'error: {argv[0]} is an MMagic config, but MMagic is not installed ({err}). '
                         'Install the extra: pip install "agile_ir_plugin[mmagic]" '
                         '(in a checkout: pip install -c constraints.txt -e ".[mmagic]")') from None
    from .mmagic import runner
    main = runner.train_main if kind == 'train' else runner.test_main
    return main(argv)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(run(sys.argv[1], sys.argv[2:]))
