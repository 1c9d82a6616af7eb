"""agile_ir_plugin: ESC, AgileIR and GLMHA restoration transformers for BasicSR and MMagic.

``import agile_ir_plugin`` makes the plain-torch archs available (``agile_ir_plugin.archs``)
and, when BasicSR is installed, registers every arch, model, loss, dataset and metric of the
plugin into BasicSR's registries exactly once.  MMagic is never imported here; its registration
lives in ``agile_ir_plugin.mmagic`` and is loaded by mmengine configs (``custom_imports``).
"""
__version__ = '0.1.0'

from . import archs  # noqa: F401  (pure torch)


def _find_spec(name):
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


if _find_spec('basicsr'):
    from . import compat as _compat
    _compat.apply_basicsr_fixes()
    from .basicsr import register_all as _register_all
    _register_all()


def __getattr__(name):
    # Lazy: the evaluation API imports BasicSR's metrics, which a pure-torch user may not want.
    if name == 'evaluate':
        from .evaluation import evaluate
        return evaluate
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
