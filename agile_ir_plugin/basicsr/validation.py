"""Old name of the preflight (``agile_ir_plugin.basicsr.preflight``); kept so code written against it
still imports.  Removed at the end of the preflight rework."""
from .preflight_data import *  # noqa: F401,F403
from .preflight_data import InputError, _build_arch, check_option_keys, known_option_keys, validate_options  # noqa: F401
