"""Every fix that BasicSR 1.4.2 (and, lazily, mmengine / MMagic) needs on today's stack.

Rules: each fix names the exact error it prevents, is chosen by feature detection (never by
version sniffing), is applied once and idempotently, and has a test (``tests/test_compat.py``; the
MMagic ones in ``tests/mmagic/test_mmagic_compat.py``) that reproduces the original failure without
it.  Nothing here changes behaviour that works.

``basicsr_fixes``: ``apply_basicsr_fixes()`` runs around the first ``import basicsr`` (``import
agile_ir_plugin`` arranges it).  ``mmagic_fixes``: ``apply_mmagic_fixes()`` runs before the first
``import mmagic`` (``agile_ir_plugin.mmagic`` calls it); ``import agile_ir_plugin`` applies none of
them.  ``FIXES`` lists what was applied in this process, for logs and tests.
"""
FIXES = []  # names of the fixes applied in this process, in order


def _once(name):
    if name in FIXES:
        return False
    FIXES.append(name)
    return True


from .basicsr_fixes import (  # noqa: E402  (the fix modules use _once)
    apply_basicsr_fixes, fix_ddp_cpu, fix_functional_tensor, fix_init_dist, fix_optimizers, fix_upstream_resume,
    init_dist, load_resume_state)
from .mmagic_fixes import (  # noqa: E402
    MMAGIC_FIXES, MMENGINE_CHECKPOINT_GLOBALS, _mediapipe_lacks_solutions, apply_mmagic_fixes,
    fix_controlnet_aux_mediapipe, fix_mmcv_ext, fix_mmengine_torch_load, fix_numpy_bool8, load_mmengine_checkpoint)

__all__ = ['FIXES', 'MMAGIC_FIXES', 'MMENGINE_CHECKPOINT_GLOBALS', 'apply_basicsr_fixes', 'apply_mmagic_fixes',
           'fix_controlnet_aux_mediapipe', 'fix_ddp_cpu', 'fix_functional_tensor', 'fix_init_dist',
           'fix_mmcv_ext', 'fix_mmengine_torch_load', 'fix_numpy_bool8', 'fix_optimizers', 'fix_upstream_resume',
           'init_dist', 'load_mmengine_checkpoint', 'load_resume_state']
