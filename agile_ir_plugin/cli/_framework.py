"""Which framework a train / test command line is for, wherever the config stands in argv.

``python -m torch.distributed.launch ... tools/train.py cfg.py`` passes ``--local-rank=N`` (torch >= 2.0;
``--local_rank=N`` before) first, so the config is not always ``argv[0]``.  The choice:

* MMagic when a positional argument (not the value of ``-opt``) ends in ``.py``;
* BasicSR otherwise (``-opt options.yml``).

``--local-rank`` is rewritten to ``--local_rank`` for BasicSR, whose parser knows only that spelling
(MMagic's parser here takes both).  One INFO line on stderr says which mode was chosen.
"""
import sys

_OPT_FLAGS = ('-opt', '--opt')


def _config_index(argv):
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in _OPT_FLAGS:
            skip = True
        elif not arg.startswith('-') and arg.endswith('.py'):
            return i
    return None


def choose_framework(argv, command):
    """``('mmagic' | 'basicsr', argv for that framework)``; prints the one INFO line."""
    argv = list(argv)
    index = _config_index(argv)
    if index is not None:
        print(f'INFO agile-ir {command}: MMagic mode ({argv[index]} is an mmengine config; mmengine Runner)',
              file=sys.stderr)
        return 'mmagic', argv
    argv = ['--local_rank' + a[len('--local-rank'):] if a.startswith('--local-rank') else a for a in argv]
    opt = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in _OPT_FLAGS), None)
    print(f'INFO agile-ir {command}: BasicSR mode ({opt or "no -opt given"}: BasicSR options)', file=sys.stderr)
    return 'basicsr', argv
