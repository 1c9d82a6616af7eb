#!/usr/bin/env python
"""Test with BasicSR test options or an MMagic config.

The code lives in ``agile_ir_plugin.cli.test`` (also the ``agile-ir`` command for wheel users); this
script runs it from a checkout.  ``python tools/test.py --help`` lists the options."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agile_ir_plugin.cli.test import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
