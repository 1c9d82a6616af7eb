"""A model first run under ``torch.inference_mode`` (a validation, the leaderboard) must still
train afterwards: per-size caches (ESC's position index, AgileIR's window geometry) filled during
inference are normal tensors, not inference tensors ("Inference tensors cannot be saved for
backward")."""
import pytest
import torch

from agile_ir_plugin.archs import ARCHS
from test_compile_graphs import CASES


@pytest.mark.parametrize('case', sorted(CASES))
def test_training_after_inference_mode(case):
    torch.manual_seed(0)
    model = ARCHS[case.split('-')[0]](**CASES[case])
    x = torch.rand(2, 3, 19, 21)
    with torch.inference_mode():
        expected = model.eval()(x)
    model.train()
    out = model(x)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected)
