#!/usr/bin/env python
"""Benchmarks: ``python tools/benchmark.py <family> [options]``.

Each family lives in ``tools/benchmarks/<family>.py`` and defines ``add_arguments(parser)`` and
``main(args)``; results go to ``docs/benchmarks/`` (JSON + Markdown + PNG), each with the command,
device, torch version and date.  Every timing is a median of repeated runs after warm-up.
"""
import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def families():
    return sorted(p.stem for p in (HERE / 'benchmarks').glob('*.py') if not p.stem.startswith('_'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='family', required=True)
    for name in families():
        module = importlib.import_module(f'benchmarks.{name}')
        p = sub.add_parser(name, help=(module.__doc__ or '').strip().splitlines()[0] if module.__doc__ else None)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    args = parser.parse_args(argv)
    return args._main(args)


if __name__ == '__main__':
    sys.exit(main())
