#!/usr/bin/env python
"""Test with BasicSR test options or an MMagic config.

    python tools/test.py -opt options/test_esc_x4.yml [--launcher ...]
    python tools/test.py configs/esc/esc_x4c64b5_4xb16-500k_div2k.py CHECKPOINT [--work-dir DIR]     (MMagic)

Results are written under ./results/<name> (the current directory).  Bad options, data or
checkpoints end the run before anything is written: one ``error: ...`` line per problem, exit 1.
"""
import os
import sys


def error_exit(err):
    """SystemExit carrying one ``error: <line>`` per problem of a PreflightError (else its message)."""
    lines = getattr(err, 'problems', None) or [' '.join(str(err).split())]
    return SystemExit('\n'.join(f'error: {line}' for line in lines))


def main(argv=None):
    from ._framework import choose_framework
    framework, argv = choose_framework(sys.argv[1:] if argv is None else argv, 'test')
    if framework == 'mmagic':
        from agile_ir_plugin.mmagic_entry import run
        return run('test', argv)
    import agile_ir_plugin  # noqa: F401  (compat fixes + registration before BasicSR builds anything)
    from agile_ir_plugin.basicsr.preflight import InputError
    from agile_ir_plugin.basicsr.tester import test_pipeline
    from agile_ir_plugin.checkpoint import CheckpointError
    try:
        test_pipeline(os.getcwd(), argv)
    except (InputError, CheckpointError) as err:
        raise error_exit(err) from None
    return 0


if __name__ == '__main__':
    sys.exit(main())
