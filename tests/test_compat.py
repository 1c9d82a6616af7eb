"""Each BasicSR compat fix: the original failure reproduced without it, and the fixed behaviour.

Runs that need a pristine interpreter (imports, process groups) use a subprocess."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from agile_ir_plugin import compat


def run_python(code, env=None):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_fixes_are_applied_once_and_idempotent():
    import basicsr  # noqa: F401  (import agile_ir_plugin applies the fixes when BasicSR is first imported)
    before = list(compat.FIXES)
    compat.apply_basicsr_fixes()
    compat.apply_basicsr_fixes()
    assert compat.FIXES == before
    assert len(set(compat.FIXES)) == len(compat.FIXES)


def test_functional_tensor_alias():
    bare = run_python('import basicsr')
    if bare.returncode == 0:
        pytest.skip('this torchvision still ships transforms.functional_tensor: nothing to fix')
    assert "No module named 'torchvision.transforms.functional_tensor'" in bare.stderr
    assert 'torchvision_functional_tensor' in compat.FIXES
    fixed = run_python('import agile_ir_plugin, basicsr; from basicsr.data.degradations import rgb_to_grayscale; '
                       'import torch; print(rgb_to_grayscale(torch.ones(3, 2, 2)).shape)')
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert 'torch.Size([1, 2, 2])' in fixed.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason='the failure is specific to machines without a GPU')
def test_init_dist_on_cpu_uses_gloo():
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port())}
    bare = run_python("""
        import agile_ir_plugin, basicsr.utils.dist_util as d
        d._init_dist_pytorch('nccl')
    """, env)
    assert bare.returncode != 0 and 'ZeroDivisionError' in bare.stderr
    fixed = run_python("""
        import agile_ir_plugin
        from basicsr.utils.options import init_dist
        import torch.distributed as dist
        init_dist('pytorch')
        print('backend', dist.get_backend(), dist.get_world_size())
    """, env)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert 'backend gloo 1' in fixed.stdout


def test_dist_params_backend_is_honoured_under_torchrun(tmp_path):
    """The options' dist_params reach init_dist for --launcher pytorch (BasicSR forwards them only for
    slurm), through the parsed options: no module global, the YAML read once."""
    env = {'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port())}
    opt = tmp_path / 'o.yml'
    opt.write_text("name: x\nnum_gpu: 0\ndatasets: {}\npath: {}\ndist_params: {backend: gloo, timeout: null}\n")
    r = run_python(f"""
        import agile_ir_plugin
        from agile_ir_plugin import compat
        assert not hasattr(compat, 'DIST_PARAMS')
        from agile_ir_plugin.basicsr.options import parse_test_options
        import torch.distributed as dist
        opt, _ = parse_test_options({str(tmp_path)!r}, ['-opt', {str(opt)!r}, '--launcher', 'pytorch'])
        print('backend', dist.get_backend(), opt['dist'], opt['world_size'])
    """, env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'backend gloo True 1' in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason='the failure is specific to machines without a GPU')
def test_ddp_model_to_device_on_cpu():
    env = {'RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port())}
    code = """
        import torch, torch.distributed as dist, agile_ir_plugin
        from basicsr.models.base_model import BaseModel
        dist.init_process_group('gloo')
        m = BaseModel.__new__(BaseModel)
        m.opt, m.device = {'dist': True, 'num_gpu': 0}, torch.device('cpu')
        fn = BaseModel.model_to_device
        fn = getattr(fn, '_agile_ir_original', fn) if MODE == 'original' else fn
        net = fn(m, torch.nn.Linear(2, 2))
        print(type(net).__name__)
    """
    bare = run_python('MODE = "original"\n' + textwrap.dedent(code), env)
    assert bare.returncode != 0
    assert 'NVIDIA driver' in bare.stderr or 'not compiled with CUDA' in bare.stderr, bare.stderr[-1500:]
    env['MASTER_PORT'] = str(free_port())
    fixed = run_python('MODE = "fixed"\n' + textwrap.dedent(code), env)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert 'DistributedDataParallel' in fixed.stdout


def test_any_torch_optimizer_by_name():
    from basicsr.models.base_model import BaseModel
    params = [torch.nn.Parameter(torch.zeros(2))]
    original = BaseModel.get_optimizer._agile_ir_original
    with pytest.raises(NotImplementedError, match='AdamW'):
        original(None, 'AdamW', params, 1e-3)
    opt = BaseModel.get_optimizer(None, 'AdamW', params, 1e-3, betas=(0.9, 0.9), weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults['betas'] == (0.9, 0.9)
    assert isinstance(BaseModel.get_optimizer(None, 'Adam', params, 1e-3), torch.optim.Adam)
    with pytest.raises(NotImplementedError, match='not a torch.optim optimizer'):
        BaseModel.get_optimizer(None, 'Adamm', params, 1e-3)
