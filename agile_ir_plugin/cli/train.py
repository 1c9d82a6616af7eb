#!/usr/bin/env python
"""Train with BasicSR options or an MMagic config.

    python tools/train.py -opt options/train_esc_x4.yml [--launcher none|pytorch|slurm] [--auto_resume]
                          [--debug] [--force_yml train:ema_decay=0.999]
    python tools/train.py configs/esc/esc_x4_div2k.py [--work-dir DIR] [--resume] ...   (MMagic)
    torchrun --nproc_per_node=4 tools/train.py -opt options/train_esc_x4.yml --launcher pytorch

Experiments are written under ./experiments/<name> (the current directory).  Bad options, data
or checkpoints end the run before anything is written, with one ``error: ...`` line and exit
code 1 (no traceback); SIGTERM saves and exits with 0 (resume with --auto_resume).
"""
import os
import sys


def _one_line(err):
    """The message of ``err``; for an error re-raised from a DataLoader worker, its last line."""
    text = str(err).strip()
    if 'Original Traceback' in text:
        last = text.splitlines()[-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return ' '.join(text.split())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].endswith('.py'):
        from agile_ir_plugin.mmagic_entry import run
        return run('train', argv)
    import agile_ir_plugin  # noqa: F401  (compat fixes + registration before BasicSR builds anything)
    from agile_ir_plugin.basicsr.trainer import TrainingStopped, train_pipeline
    from agile_ir_plugin.basicsr.validation import InputError
    from agile_ir_plugin.checkpoint import CheckpointError
    try:
        train_pipeline(os.getcwd(), argv=argv)
    except (CheckpointError, InputError, TrainingStopped) as err:
        raise SystemExit(f'error: {_one_line(err)}') from None
    return 0


if __name__ == '__main__':
    sys.exit(main())
