"""Old name of the preflight: use ``agile_ir_plugin.basicsr.preflight`` (kept until the callers move)."""
from .preflight import InputError, PreflightError, run_preflight  # noqa: F401
from .preflight_data import inspect_image  # noqa: F401
