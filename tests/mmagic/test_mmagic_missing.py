"""Without MMagic, an MMagic config gives one clear line saying how to install the extra (the
import is blocked in a fresh interpreter, so this runs whether or not the extra is installed)."""
import json

import pytest

from conftest import REPO_ROOT
from mmagic_helpers import last_line, run_python

pytestmark = pytest.mark.mmagic

HINT = 'pip install -c constraints.txt -e ".[mmagic]"'


def test_mmagic_config_without_mmagic_says_how_to_install(tmp_path):
    config = REPO_ROOT / 'configs' / 'esc' / 'esc_x4c64b5_4xb16-500k_div2k.py'
    proc = run_python(f'''
        import json, runpy, sys
        sys.modules['mmagic'] = None  # as if not installed
        out = {{}}
        try:  # the adapter itself
            import agile_ir_plugin.mmagic.runner
        except ImportError as err:
            out['adapter'] = [type(err).__name__, str(err)]
        sys.argv = ['tools/train.py', {str(config)!r}, '--work-dir', 'w']
        try:  # what a user runs
            runpy.run_path({str(REPO_ROOT / 'tools' / 'train.py')!r}, run_name='__main__')
        except SystemExit as exit:
            out['tool'] = str(exit.code)
        print(json.dumps(out))
    ''', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(last_line(proc))
    kind, message = out['adapter']
    assert kind == 'MMagicNotInstalledError' and HINT in message and '\n' not in message
    assert HINT in out['tool'] and '\n' not in out['tool'].strip()
