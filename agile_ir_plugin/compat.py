"""Every fix that BasicSR 1.4.2 (and, lazily, mmengine / MMagic) needs on today's stack.

Rules: each fix names the exact error it prevents, is chosen by feature detection (never by
version sniffing), is applied once and idempotently, and has a test in ``tests/test_compat.py``
that reproduces the original failure without it.  Nothing here changes behaviour that works.

``apply_basicsr_fixes()`` runs before the first ``import basicsr`` (``import agile_ir_plugin`` calls
it).  ``FIXES`` lists what was applied, for logs and tests.
"""
import importlib
import importlib.util
import sys
import types

FIXES = []  # names of the fixes applied in this process, in order


def _once(name):
    if name in FIXES:
        return False
    FIXES.append(name)
    return True


# ---------------------------------------------------------------------------------------------
# 1. torchvision >= 0.17 removed torchvision.transforms.functional_tensor.
#    Prevents: ModuleNotFoundError: No module named 'torchvision.transforms.functional_tensor'
#    (raised by basicsr/data/degradations.py on `import basicsr`).
# ---------------------------------------------------------------------------------------------
def fix_functional_tensor():
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        if importlib.util.find_spec(name) is not None:
            return  # old torchvision still ships it
    except ModuleNotFoundError:  # torchvision itself missing: nothing to alias
        return
    if not _once('torchvision_functional_tensor'):
        return
    from torchvision.transforms import functional as tv_functional
    shim = types.ModuleType(name)
    shim.__doc__ = 'agile_ir_plugin.compat alias of torchvision.transforms.functional (removed in 0.17).'
    shim.rgb_to_grayscale = tv_functional.rgb_to_grayscale
    sys.modules[name] = shim
    import torchvision.transforms as tv_transforms
    tv_transforms.functional_tensor = shim


def apply_basicsr_fixes():
    """Fixes needed before and right after ``import basicsr``; idempotent."""
    fix_functional_tensor()
