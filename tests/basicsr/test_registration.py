"""`import agile_ir_plugin` registers everything into BasicSR exactly once, without mmagic/mmcv or a
GPU, and the archs/ops layers import nothing from the frameworks."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_ROOT

PKG = REPO_ROOT / 'agile_ir_plugin'


def run_python(code):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=180,
                          env={'CUDA_VISIBLE_DEVICES': '', 'PATH': '/usr/bin:/bin'})


def test_fresh_interpreter_registers_every_arch_once_and_reimport_is_a_no_op():
    r = run_python("""
        import sys
        import agile_ir_plugin
        from agile_ir_plugin.archs import ARCHS
        from basicsr.utils import registry as R
        regs = [R.ARCH_REGISTRY, R.MODEL_REGISTRY, R.LOSS_REGISTRY, R.DATASET_REGISTRY, R.METRIC_REGISTRY]
        for name, cls in ARCHS.items():
            assert R.ARCH_REGISTRY.get(name) is cls, name
        assert R.DATASET_REGISTRY.get('EmbeddedSRDataset') is not None
        sizes = [len(r._obj_map) for r in regs]
        for mod in [m for m in sys.modules if m == 'agile_ir_plugin' or m.startswith('agile_ir_plugin.')]:
            del sys.modules[mod]
        import agile_ir_plugin  # a second import must register nothing twice (and not raise)
        assert [len(r._obj_map) for r in regs] == sizes, (sizes, [len(r._obj_map) for r in regs])
        banned = [m for m in sys.modules if m.split('.')[0] in ('mmagic', 'mmcv', 'mmengine')]
        assert not banned, banned
        import torch
        assert not torch.cuda.is_initialized()
        print('archs', sorted(ARCHS))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'archs' in r.stdout


def test_archs_and_ops_import_no_framework():
    for path in sorted((PKG / 'archs').glob('*.py')) + sorted((PKG / 'ops').glob('*.py')):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split('.')[0] not in ('basicsr', 'mmagic', 'mmcv', 'mmengine'), f'{path}: imports {name}'


def test_archs_usable_without_basicsr_installed():
    r = run_python("""
        import sys
        sys.modules['basicsr'] = None  # as if BasicSR were not installed
        from agile_ir_plugin.archs import ARCHS
        import agile_ir_plugin.ops
        assert ARCHS
        print('ok', len(ARCHS))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith('ok')
