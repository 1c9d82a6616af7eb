#!/usr/bin/env python
"""Train with BasicSR options or an MMagic config.

The code lives in ``agile_ir_plugin.cli.train`` (also the ``agile-ir`` command for wheel users); this
script runs it from a checkout.  ``python tools/train.py --help`` lists the options."""
import os
import signal
import sys


def _sigterm_before_start(signum, frame):  # until the command installs its own handler (first thing in main)
    print('SIGTERM before training started: nothing was written; exiting.', file=sys.stderr)
    raise SystemExit(0)


signal.signal(signal.SIGTERM, _sigterm_before_start)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agile_ir_plugin.cli.train import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
