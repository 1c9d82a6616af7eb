"""A BasicSR fork that registers its own `ESC` / `ESCFP` (as the official ESC repository does) and the
plugin live in one process, in either import order; `agile_ir.<Name>` always names ours."""
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

FORK = '''
import sys
import torchvision.transforms.functional
# the fork's own environment (an older torchvision) has this module; BasicSR imports it
sys.modules.setdefault('torchvision.transforms.functional_tensor', torchvision.transforms.functional)
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
import torch.nn as nn

@ARCH_REGISTRY.register()
class ESC(nn.Module):
    pass

@ARCH_REGISTRY.register()
class ESCFP(nn.Module):
    pass

@MODEL_REGISTRY.register()
class ImageRestorationModel:
    pass
'''

CHECK = '''
import warnings
warnings.simplefilter('always')
with warnings.catch_warnings(record=True) as caught:
    {imports}
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
import agile_ir_plugin.archs as ours
import fork_archs
assert ARCH_REGISTRY.get('ESC') is fork_archs.ESC, 'the fork keeps its plain ESC'
assert ARCH_REGISTRY.get('ESCFP') is fork_archs.ESCFP
assert ARCH_REGISTRY.get('agile_ir.ESC') is ours.ESC, 'ours under the alias'
assert ARCH_REGISTRY.get('agile_ir.ESCFP') is ours.ESCFP
assert ARCH_REGISTRY.get('AgileIR') is ours.AgileIR, 'free plain names stay ours'
assert ARCH_REGISTRY.get('agile_ir.AgileIR') is ours.AgileIR
assert MODEL_REGISTRY.get('ImageRestorationModel') is fork_archs.ImageRestorationModel
assert MODEL_REGISTRY.get('agile_ir.ImageRestorationModel').__module__.startswith('agile_ir_plugin')
msgs = [str(w.message) for w in caught if 'agile_ir' in str(w.message)]
for name in ('ESC', 'ESCFP', 'ImageRestorationModel'):
    hits = [m for m in msgs if f"'{{name}}' is fork_archs" in m]
    assert len(hits) == 1, (name, msgs)
    assert f"'agile_ir.{{name}}'" in hits[0] and 'agile_ir_plugin' in hits[0], hits[0]
assert len(msgs) == 3, msgs
print('OK')
'''


def run_check(tmp_path, imports):
    (tmp_path / 'fork_archs.py').write_text(FORK)
    code = textwrap.dedent(CHECK).format(imports='\n    '.join(imports))
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={'PYTHONPATH': f'{tmp_path}:{REPO_ROOT}', 'CUDA_VISIBLE_DEVICES': '',
                               'PATH': '/usr/bin:/bin', 'OMP_NUM_THREADS': '1'})


def test_fork_registering_esc_after_our_import_does_not_crash_and_keeps_its_names(tmp_path):
    r = run_check(tmp_path, ['import agile_ir_plugin', 'import fork_archs'])
    assert r.returncode == 0 and r.stdout.strip().endswith('OK'), r.stderr[-3000:]


def test_fork_registering_esc_before_our_import_keeps_its_names(tmp_path):
    r = run_check(tmp_path, ['import fork_archs', 'import agile_ir_plugin'])
    assert r.returncode == 0 and r.stdout.strip().endswith('OK'), r.stderr[-3000:]


def test_alias_builds_ours_through_basicsr_options():
    import agile_ir_plugin  # noqa: F401
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY

    from agile_ir_plugin.archs import ARCHS
    net = build_network({'type': 'agile_ir.ESC', 'dim': 8, 'pdim': 4, 'n_blocks': 1, 'conv_blocks': 1, 'upscaling_factor': 2,
                         'kernel_size': 3, 'window_size': 8})
    assert type(net) is ARCHS['ESC']
    for name in ARCHS:
        assert ARCH_REGISTRY.get(f'agile_ir.{name}') is ARCHS[name]
    assert LOSS_REGISTRY.get('agile_ir.MRAELoss') is not None
    assert DATASET_REGISTRY.get('agile_ir.HSIDataset') is not None
    assert METRIC_REGISTRY.get('agile_ir.calculate_mrae') is not None
