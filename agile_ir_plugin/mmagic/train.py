"""``python -m agile_ir_plugin.mmagic.train CONFIG [flags of MMagic's tools/train.py]``.

MMagic's own ``tools/train.py`` (and ``dist_train.sh``) imports MMagic before a config's
``custom_imports`` can apply our fixes (``AttributeError: module 'numpy' has no attribute 'bool8'``).
This entry point mirrors it (same flags: ``--work-dir``, ``--resume``, ``--amp``, ``--auto-scale-lr``,
``--cfg-options``, ``--launcher``, ``--local-rank``) after the fixes and our registration:

    python -m agile_ir_plugin.mmagic.train configs/esc/esc_x4c64b5_4xb16-500k_div2k.py --work-dir work_dirs/esc
    torchrun --nproc_per_node=4 -m agile_ir_plugin.mmagic.train CONFIG --launcher pytorch   (gloo on CPU)
"""
import sys

from .runner import train_main

if __name__ == '__main__':
    sys.exit(train_main())
