"""BasicSR adapter: registers the plugin's archs, models, losses, datasets and metrics.

Thin by design: registration lines and the few components BasicSR 1.4.2 lacks.  Each
component module in ``models/``, ``losses/``, ``data/`` and ``metrics/`` registers itself with
BasicSR's decorator when imported; archs stay pure torch and are registered from
``agile_ir_plugin.archs.ARCHS`` here.

Every name is also registered as ``agile_ir.<Name>``; a plain name owned by another package (a
BasicSR fork's ``ESC``) stays theirs, in either import order (see :mod:`.registry`).
"""
import importlib
from pathlib import Path

_REGISTERED = False


def _import_component_modules():
    root = Path(__file__).parent
    for sub in ('data', 'losses', 'metrics', 'models'):
        for path in sorted((root / sub).glob('*.py')):
            if path.stem != '__init__':
                importlib.import_module(f'{__name__}.{sub}.{path.stem}')


def register_all():
    """Register everything into BasicSR's registries exactly once per interpreter."""
    global _REGISTERED
    if _REGISTERED:
        return
    from basicsr.utils.registry import ARCH_REGISTRY

    from .. import archs
    from .registry import register_name
    for name, cls in archs.ARCHS.items():
        register_name(ARCH_REGISTRY, name, cls)
    _import_component_modules()
    _REGISTERED = True
