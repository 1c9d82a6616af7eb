"""agile_ir_plugin: ESC, AgileIR and GLMHA restoration transformers for BasicSR and MMagic.

``import agile_ir_plugin`` makes the plain-torch archs available (``agile_ir_plugin.archs``) and
registers every arch, model, loss, dataset and metric of the plugin into BasicSR's registries
exactly once, with BasicSR's compat fixes applied (``agile_ir_plugin.compat``).  MMagic is never
imported here; its registration lives in ``agile_ir_plugin.mmagic`` (``custom_imports``).

How, without importing BasicSR eagerly (``import agile_ir_plugin.archs`` runs this file first and
must import no basicsr, mmengine or mmagic and patch nothing):

- BasicSR already imported: the fixes and the registration happen now.
- Otherwise, when BasicSR is installed, one import hook is installed, :class:`BasicSRImportHook`
  (a ``sys.meta_path`` finder for the name ``basicsr`` only).  It does nothing until something
  imports ``basicsr``; then its loader wraps BasicSR's own: the pre-import fix (a
  ``torchvision.transforms.functional_tensor`` alias, needed while ``basicsr/__init__`` runs),
  BasicSR's module code, then the remaining fixes and the registration.  It removes itself after
  that one import.  So ``import agile_ir_plugin`` followed by any BasicSR use finds our archs
  registered, and the pure-torch path (``from agile_ir_plugin.archs import ESC``) costs nothing.
"""
import importlib.abc
import importlib.util
import sys

__version__ = '0.1.0'


def _setup_basicsr():
    """Compat fixes and registration; ``basicsr`` is importable (already imported or being imported)."""
    from . import compat
    compat.apply_basicsr_fixes()
    from .basicsr import register_all
    register_all()


class _WrappedLoader(importlib.abc.Loader):
    """BasicSR's own loader, with the pre-import fix before and the setup after its module code."""

    def __init__(self, inner, hook):
        self.inner, self.hook = inner, hook

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        from . import compat
        compat.fix_functional_tensor()  # basicsr/__init__ imports basicsr.data.degradations, which needs it
        self.inner.exec_module(module)
        self.hook.remove()
        _setup_basicsr()


class BasicSRImportHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that answers for ``basicsr`` only (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'basicsr':
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _WrappedLoader(spec.loader, self)
                return spec
        return None

    def install(self):
        if not any(isinstance(f, BasicSRImportHook) for f in sys.meta_path):
            sys.meta_path.insert(0, self)
        return self

    def remove(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def _basicsr_installed():
    try:
        return importlib.util.find_spec('basicsr') is not None
    except (ImportError, ValueError):
        return False


if sys.modules.get('basicsr') is not None:
    _setup_basicsr()
elif 'basicsr' not in sys.modules and _basicsr_installed():
    BasicSRImportHook().install()


def __getattr__(name):
    # Lazy: the archs are pure torch but importing them takes time; the evaluation API imports
    # BasicSR's metrics, which a pure-torch user may not want.
    if name == 'archs':
        return importlib.import_module(f'{__name__}.archs')
    if name == 'evaluate':
        from .evaluation import evaluate
        return evaluate
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
