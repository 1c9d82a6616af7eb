#!/usr/bin/env python
"""Benchmarks: ``python tools/benchmark.py <family> [options]``.

Each family lives in ``tools/benchmarks/<family>.py`` and defines ``add_arguments(parser)`` and
``main(args)``; results (JSON + Markdown + PNG, each with the command, device, torch version and
date) go to ``./benchmark_results/``, so running a benchmark leaves the checkout's tracked files
alone; ``--update-docs`` (before the family) writes them into the tracked ``docs/benchmarks/``
instead, and ``AGILE_IR_BENCHMARK_DIR`` or a family's ``--out-dir`` names any other folder.
Every timing is a median of repeated runs after warm-up.

    python tools/benchmark.py esc --threads 1                  # -> ./benchmark_results/esc.{json,md,png}
    python tools/benchmark.py --update-docs esc --threads 1    # -> docs/benchmarks/
"""
import argparse
import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def families():
    return sorted(p.stem for p in (HERE / 'benchmarks').glob('*.py') if not p.stem.startswith('_'))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--update-docs', action='store_true')
    known, _ = pre.parse_known_args(argv[:1])  # only before the family: a family's own flags stay its own
    if known.update_docs:  # before the families (and _common) are imported: they read it once
        os.environ['AGILE_IR_BENCHMARK_DIR'] = str(HERE.parent / 'docs' / 'benchmarks')
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--update-docs', action='store_true',
                        help='write the results into the tracked docs/benchmarks/ (default: ./benchmark_results/)')
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
