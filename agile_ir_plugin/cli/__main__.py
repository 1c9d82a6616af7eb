"""``python -m agile_ir_plugin.cli ...`` = the ``agile-ir`` command."""
import sys

from .main import main

sys.exit(main())
