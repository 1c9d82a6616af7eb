#!/usr/bin/env python
"""Upscale your own images with a trained network.

The code lives in ``agile_ir_plugin.cli.infer``; this script runs it from a checkout.
``python tools/infer.py --help`` lists the options."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agile_ir_plugin.cli.infer import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
