#!/usr/bin/env python
"""Test with BasicSR test options or an MMagic config.

    python tools/test.py -opt options/test_esc_x4.yml [--launcher ...]
    python tools/test.py configs/esc/esc_x4_div2k.py CHECKPOINT [--work-dir DIR]     (MMagic)

Results are written under ./results/<name> (the current directory).
"""
import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].endswith('.py'):
        from agile_ir_plugin.mmagic_entry import run
        return run('test', argv)
    import agile_ir_plugin  # noqa: F401
    from agile_ir_plugin.basicsr.tester import test_pipeline
    test_pipeline(os.getcwd())
    return 0


if __name__ == '__main__':
    sys.exit(main())
