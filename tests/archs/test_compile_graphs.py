"""torch.compile readiness (issue 9): every arch is captured by Dynamo as ONE graph — no graph
break in the hot loop — for inference with symbolic (dynamic) H and W and for a training step
(forward + loss; the backward graph follows from AOTAutograd).  Only Dynamo's capture runs here
(``torch._dynamo.explain``); compile time and compiled speed are benchmarks
(``python tools/benchmark.py compile``)."""
import warnings

import pytest
import torch

from agile_ir_plugin.archs import ARCHS

# small configurations: a graph break does not depend on depth or width
CASES = {
    'ESC': dict(dim=16, pdim=4, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                upscaling_factor=2),
    'ESCFP': dict(dim=12, pdim=4, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                  upscaling_factor=2),
    'AgileIR': dict(upscale=2, window_size=4, depths=(2,), embed_dim=12, num_heads=(2,)),
    'Restormer': dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1)),
    'Restormer-glmha': dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1),
                            attn='glmha'),
    'MSTPlusPlus': dict(in_channels=3, out_channels=8, n_feat=8, stage=1),
    'MSTPlusPlus-glmha': dict(in_channels=3, out_channels=8, n_feat=8, stage=1, attn='glmha'),
}


def _explain(fn, *args):
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return torch._dynamo.explain(fn)(*args)


def _model(case):
    torch.manual_seed(0)
    return ARCHS[case.split('-')[0]](**CASES[case])


def _breaks(result):
    return [str(b.reason).splitlines()[0] for b in result.break_reasons]


@pytest.mark.parametrize('case', sorted(CASES))
def test_inference_is_one_graph_for_every_size(case):
    """``torch.compile(model, dynamic=True)``: one graph serves sizes of every residue modulo the
    window (padding included) — no graph break, no recompile — with eager's outputs.  Dynamo only
    (``backend='eager'``): what is checked is the capture, not Inductor's code.

    The sizes are all above PyTorch's CPU conv-backend switch (``C*H*W > 20480`` for every conv,
    a guard from ``torch._C._select_conv_backend``): crossing it recompiles once, in any model."""
    from torch._dynamo.utils import counters
    model = _model(case).eval()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, dynamic=True, backend='eager')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for h, w in ((150, 141), (157, 149), (168, 155)):
            x = torch.rand(1, 3, h, w)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    assert counters['stats']['unique_graphs'] == 1, dict(counters['graph_break'])


@pytest.mark.parametrize('case', sorted(CASES))
def test_training_step_is_one_graph(case):
    model = _model(case).train()
    x = torch.rand(2, 3, 16, 16)

    def loss(inp):
        return model(inp).abs().mean()

    result = _explain(loss, x)
    assert result.graph_break_count == 0, _breaks(result)
    assert result.graph_count == 1


def test_agileir_compiled_training_matches_eager_values_and_gradients():
    """Under torch.compile AgileIR's recomputation becomes a non-reentrant checkpoint (its
    hand-written backward cannot be traced); through AOTAutograd (``aot_eager``: the same joint
    graph and partitioning Inductor gets, without C++ compilation) values and gradients equal eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = ARCHS['AgileIR'](**CASES['AgileIR'], drop_path_rate=0.).train()  # no RNG in the comparison
    model_ref = ARCHS['AgileIR'](**CASES['AgileIR'], drop_path_rate=0.).train()
    model_ref.load_state_dict(model.state_dict())
    compiled = torch.compile(model, backend='aot_eager')
    x = torch.rand(2, 3, 16, 12)
    loss = compiled(x).square().mean()
    loss.backward()
    loss_ref = model_ref(x).square().mean()
    loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), model_ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
