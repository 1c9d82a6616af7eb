#!/usr/bin/env python
"""

The code lives in ``agile_ir_plugin.cli.export_onnx`` (also the ``agile-ir`` command for wheel users); this
script runs it from a checkout.  ``python tools/export_onnx.py --help`` lists the options."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agile_ir_plugin.cli.export_onnx import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
