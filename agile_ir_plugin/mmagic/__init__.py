"""MMagic adapter: every arch of the plugin as an MMagic ``generator``.

Importing this subpackage imports MMagic (after the compat fixes it needs on today's stack,
:func:`agile_ir_plugin.compat.apply_mmagic_fixes`) and registers every class of
``agile_ir_plugin.archs.ARCHS`` into ``mmagic.registry.MODELS``, so that MMagic's own
``BaseEditModel``, ``DataPreprocessor``, losses, ``BasicImageDataset``, transforms, metrics and
hooks train and test them -- nothing of MMagic is copied here.  ``import agile_ir_plugin`` never
imports this module: configs load it with

    custom_imports = dict(imports=['agile_ir_plugin.mmagic'], allow_failed_imports=False)

Names.  Each arch is registered twice:

* in a child registry of MMagic's ``MODELS`` with scope ``agile_ir``, always:
  ``type='agile_ir.Restormer'`` is our arch whatever MMagic ships;
* under its plain name in MMagic's ``MODELS`` when MMagic has no model of that name
  (``type='ESC'``).  MMagic's own models keep their names: MMagic 1.2.0 has a ``Restormer`` of its
  own, so ours is reached as ``agile_ir.Restormer``.
"""
from .. import compat as _compat

INSTALL_HINT = 'pip install "agile_ir_plugin[mmagic]" (in a checkout: pip install -c constraints.txt -e ".[mmagic]")'


class MMagicNotInstalledError(ImportError):
    """MMagic (or mmengine / mmcv-lite) is missing; the message says how to install the extra."""


def _installed(name):
    import importlib.util
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None  # a bare folder named so is no install


def _require_mmagic():
    missing = [name for name in ('mmengine', 'mmcv', 'mmagic') if not _installed(name)]
    if missing:
        raise MMagicNotInstalledError(
            f'MMagic configs need the [mmagic] extra ({", ".join(missing)} not installed): {INSTALL_HINT}')


_require_mmagic()
_compat.apply_mmagic_fixes()

from .registration import MODELS, SCOPE, register_all, registered_names  # noqa: E402

register_all()

__all__ = ['MODELS', 'SCOPE', 'INSTALL_HINT', 'MMagicNotInstalledError', 'register_all', 'registered_names']
