"""ONNX export (issue 9, deliverable 4): each arch exported once at one size, then run by
onnxruntime at a *different* batch / H / W and compared with PyTorch within 1e-4."""
import json

import pytest
import torch

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

from agile_ir_plugin.archs import ARCHS  # noqa: E402
from agile_ir_plugin.export import ExportError, export_onnx  # noqa: E402

ATOL = 1e-4


CASES = {
    'ESC': (dict(dim=16, pdim=4, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                 upscaling_factor=2), 2),
    'ESCFP': (dict(dim=12, pdim=4, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                   upscaling_factor=2), 2),
    'AgileIR': (dict(upscale=2, img_size=16, window_size=4, depths=(2,), embed_dim=12, num_heads=(2,)), 2),
    'Restormer-mdta': (dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1),
                            attn='mdta'), 1),
    'Restormer-glmha': (dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1),
                             attn='glmha'), 1),
}


def _model(case):
    kwargs, _ = CASES[case]
    torch.manual_seed(0)
    model = ARCHS[case.split('-')[0]](**kwargs).eval()
    with torch.no_grad():  # non-trivial weights (some archs zero-initialise their last layers)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _check(tmp_path, case, batch=2, dynamic_batch=True):
    model = _model(case)
    scale = CASES[case][1]
    path = tmp_path / f'{case}.onnx'
    example = torch.rand(batch, 3, 19, 21)  # needs padding to every window / downsampling factor
    diff = export_onnx(model, path, example, dynamic_batch=dynamic_batch)
    assert diff is not None and diff <= ATOL

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField('dim_param') for d in dims] == [dynamic_batch, False, True, True]

    # a size the export never saw: other batch (when dynamic), H and W of other residues
    x = torch.rand(3 if dynamic_batch else batch, 3, 26, 13)
    assert _ort_vs_torch(path, model, x, scale) <= ATOL


def _ort_vs_torch(path, model, x, scale):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    assert out.shape == tuple(ref.shape) == (x.shape[0], 3, x.shape[2] * scale, x.shape[3] * scale)
    return abs(torch.from_numpy(out) - ref).max().item()


def test_esc_exports_with_dynamic_shapes_through_the_cli(tmp_path):
    """tools/export_onnx.py: params_ema of a checkpoint -> ONNX with a dynamic batch, H and W.
    ESC's per-sample 3x3 kernels run as a conv with groups=B*pdim in eager, a group count ONNX
    Conv cannot take from a symbolic batch; while exporting they run as a sum of 9 shifted taps
    (``esc_arch.per_sample_depthwise_conv``), so the batch stays dynamic."""
    from conftest import run_tool
    model = _model('ESC')
    kwargs, scale = CASES['ESC']
    ckpt = tmp_path / 'net_g.pth'
    torch.save({'params': {k: torch.zeros_like(v) for k, v in model.state_dict().items()},
                'params_ema': model.state_dict()}, ckpt)
    out = tmp_path / 'esc.onnx'
    res = run_tool('export_onnx', ['--arch', 'ESC', '--arch-args', json.dumps(kwargs), '--ckpt', str(ckpt),
                                   '--param-key', 'params_ema', '--out', str(out), '--input-size', '19', '21'],
                   cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'max |onnxruntime - torch|' in res.stdout
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField('dim_param') for d in dims] == [True, False, True, True]
    # another batch, H and W; the exported weights are params_ema (params are all zeros and would
    # give another output)
    assert _ort_vs_torch(out, model, torch.rand(3, 3, 26, 13), scale) <= ATOL


@pytest.mark.parametrize('case', ['ESC', 'ESCFP'])
def test_esc_exports_with_dynamic_shapes(tmp_path, case):
    """Dynamic batch too: exported at batch 2, run at batch 3 (ESC-FP: its fused per-sample k x k
    kernel is exported split into the shared depthwise conv + the per-sample 3x3 taps)."""
    _check(tmp_path, case)


def test_cli_refuses_a_missing_param_key(tmp_path):
    import importlib
    from conftest import REPO_ROOT
    cli = importlib.import_module('agile_ir_plugin.cli.export_onnx')
    ckpt = tmp_path / 'net_g.pth'
    torch.save({'net': {}}, ckpt)
    with pytest.raises(SystemExit) as exc:
        cli.main(['--arch', 'ESC', '--ckpt', str(ckpt), '--out', str(tmp_path / 'x.onnx')])
    assert str(exc.value).startswith(f"error: {ckpt}: found no weights") and "keys 'net'" in str(exc.value)
    torch.save({'params': {}}, ckpt)  # an explicit key must exist: no fallback from params_ema to params
    with pytest.raises(SystemExit) as exc:
        cli.main(['--arch', 'ESC', '--ckpt', str(ckpt), '--param-key', 'params_ema', '--out', str(tmp_path / 'x.onnx')])
    assert "has no 'params_ema' weights; it holds: params" in str(exc.value)
    assert not (tmp_path / 'x.onnx').exists()


def test_agileir_exports_with_dynamic_shapes(tmp_path):
    _check(tmp_path, 'AgileIR')


@pytest.mark.slow
@pytest.mark.parametrize('attn', ['mdta', 'glmha'])
def test_restormer_exports_with_dynamic_hw(tmp_path, attn):
    _check(tmp_path, f'Restormer-{attn}', batch=1, dynamic_batch=False)


def test_dynamic_batch_of_a_small_net(tmp_path):
    """The batch axis is symbolic too; a batch-1 example is traced at batch 2 (no 1-specialisation)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.GELU(), torch.nn.PixelShuffle(2))
    path = tmp_path / 'net.onnx'
    assert export_onnx(model, path, torch.rand(1, 3, 9, 10)) <= ATOL
    graph = onnx.load(str(path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField('dim_param') for d in dims] == [True, False, True, True]
    # named axes (torch.export's own names were s77, s53, ...)
    assert [d.dim_param for d in dims] == ['batch', '', 'height', 'width']
    assert [d.dim_param for d in graph.output[0].type.tensor_type.shape.dim] == ['batch', '', '2*height', '2*width']
    assert _ort_vs_torch(path, model, torch.rand(3, 3, 26, 13), 2) <= ATOL


def test_specialised_graph_is_caught(tmp_path):
    """An example that needs no padding traces the unpadded branch: the graph then only fits that
    size, and export_onnx's probe at another size must say so instead of returning a small diff."""
    model = _model('Restormer-mdta')
    with pytest.raises(ExportError, match='specialised|differs'):
        export_onnx(model, tmp_path / 'bad.onnx', torch.rand(1, 3, 16, 24), dynamic_batch=False, dynamo=False)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r'\(B, C, H, W\)'):
        export_onnx(_model('Restormer-mdta'), tmp_path / 'x.onnx', torch.rand(3, 16, 16))
    with pytest.raises(ExportError, match='opset'):
        export_onnx(_model('Restormer-mdta'), tmp_path / 'x.onnx', torch.rand(1, 3, 16, 16), opset=13)
