#!/usr/bin/env python
"""Train with BasicSR options or an MMagic config.

    python tools/train.py -opt options/train_esc_x4.yml [--launcher none|pytorch|slurm] [--auto_resume]
                          [--start_fresh] [--debug] [--force_yml train:ema_decay=0.999]
    python tools/train.py configs/esc/esc_x4c64b5_4xb16-500k_div2k.py [--work-dir DIR] [--resume] ...   (MMagic)
    torchrun --nproc_per_node=4 tools/train.py -opt options/train_esc_x4.yml --launcher pytorch

Experiments are written under ./experiments/<name> (the current directory).  Bad options, data
or checkpoints end the run before anything is written, with ``error: ...`` lines and exit code 1
(no traceback); a checkpoint that cannot be written completely stops the run the same way.
SIGTERM saves and exits with 0 (resume with --auto_resume).  ``--auto_resume`` continues from the
newest complete checkpoint; if the experiment has states but none is usable it stops and lists
them, unless ``--start_fresh`` is given too (the old experiment is then archived, as BasicSR does).
"""
import os
import sys

START_FRESH = '--start_fresh'


def _one_line(err):
    """The message of ``err``; for an error re-raised from a DataLoader worker, its last line."""
    text = str(err).strip()
    if 'Original Traceback' in text:
        last = text.splitlines()[-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return ' '.join(text.split())


def main(argv=None):
    from ._framework import choose_framework
    framework, argv = choose_framework(sys.argv[1:] if argv is None else argv, 'train')
    if framework == 'mmagic':
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # mmengine's own behaviour, not tools/train.py's early exit
        from agile_ir_plugin.mmagic_entry import run
        return run('train', argv)
    from agile_ir_plugin.basicsr.guards import StopRequest, StopRequested
    stop = StopRequest.install()  # first: a SIGTERM from here on exits 0 (nothing written) or saves
    try:
        return _train(argv, stop)
    except StopRequested as err:
        print(err, file=sys.stderr)
        return 0
    finally:
        stop.uninstall()


def _train(argv, stop):
    import agile_ir_plugin  # noqa: F401  (compat fixes + registration before BasicSR builds anything)
    from agile_ir_plugin.basicsr.checkpointing import CheckpointWriteError, ResumeError
    from agile_ir_plugin.basicsr.guards import TrainingStopped
    from agile_ir_plugin.basicsr.loop import train_pipeline
    from agile_ir_plugin.basicsr.preflight import InputError, PreflightError
    from agile_ir_plugin.checkpoint import CheckpointError
    start_fresh = START_FRESH in argv
    argv = [a for a in argv if a != START_FRESH]
    try:
        train_pipeline(os.getcwd(), argv=argv, stop=stop, start_fresh=start_fresh)
    except ResumeError as err:
        raise SystemExit('\n'.join([f'error: {err.summary}', *(f'  {line}' for line in err.lines)])) from None
    except PreflightError as err:
        raise SystemExit('\n'.join(f'error: {line}' for line in err.problems)) from None
    except (CheckpointError, CheckpointWriteError, InputError, TrainingStopped) as err:
        raise SystemExit(f'error: {_one_line(err)}') from None
    return 0


if __name__ == '__main__':
    sys.exit(main())
