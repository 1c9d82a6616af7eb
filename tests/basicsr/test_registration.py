"""`import agile_ir_plugin` registers everything into BasicSR exactly once, without mmagic/mmcv or a
GPU, and the archs/ops layers import nothing from the frameworks."""
import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PKG = REPO_ROOT / 'agile_ir_plugin'


def run_python(code):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=180,
                          env={'CUDA_VISIBLE_DEVICES': '', 'PATH': '/usr/bin:/bin'})


def test_fresh_interpreter_registers_every_arch_once_and_reimport_is_a_no_op():
    r = run_python("""
        import sys
        # pure archs: importing them imports no framework and patches nothing (before: 85 BasicSR
        # modules and every compat fix, a fake torchvision module included) ...
        import agile_ir_plugin.archs
        from agile_ir_plugin import compat
        frameworks = [m for m in sys.modules if m.split('.')[0] in ('basicsr', 'mmagic', 'mmcv', 'mmengine')]
        assert not frameworks, frameworks[:5]
        assert compat.FIXES == [], compat.FIXES
        assert 'torchvision.transforms.functional_tensor' not in sys.modules
        assert len([f for f in sys.meta_path if type(f).__name__ == 'BasicSRImportHook']) == 1
        # ... and the first BasicSR use finds everything registered, BasicSR fixed, the hook gone
        import agile_ir_plugin
        from agile_ir_plugin.archs import ARCHS
        from basicsr.utils import registry as R
        regs = [R.ARCH_REGISTRY, R.MODEL_REGISTRY, R.LOSS_REGISTRY, R.DATASET_REGISTRY, R.METRIC_REGISTRY]
        for name, cls in ARCHS.items():
            assert R.ARCH_REGISTRY.get(name) is cls, name
        assert 'init_dist_cpu_gloo' in compat.FIXES
        assert not [f for f in sys.meta_path if type(f).__name__ == 'BasicSRImportHook']
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


@pytest.mark.slow
def test_basicsr_imported_before_the_plugin_is_set_up_at_once():
    r = run_python("""
        import sys
        import torchvision.transforms.functional as F
        sys.modules['torchvision.transforms.functional_tensor'] = F  # what a user's own fix would do
        import basicsr
        from basicsr.utils.registry import ARCH_REGISTRY
        assert 'ESC' not in ARCH_REGISTRY._obj_map
        import agile_ir_plugin
        from agile_ir_plugin.archs import ESC
        assert ARCH_REGISTRY.get('ESC') is ESC
        assert not [f for f in sys.meta_path if type(f).__name__ == 'BasicSRImportHook']
        print('ok')
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith('ok')
