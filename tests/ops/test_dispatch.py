"""The attention dispatcher on CPU: which backend ``auto`` picks and why (CUDA's choice with the
fused-kernel probe simulated), the choice logged once, and a fused kernel failing at run time:
an error naming the inputs by default, the exact ``chunked`` result when the fallback is allowed.
Naive attention is the reference for every value."""
import importlib
import logging

import pytest
import torch

from agile_ir_plugin.archs.esc_arch import ESC
from agile_ir_plugin.archs.agileir_arch import AgileIR

A = importlib.import_module('agile_ir_plugin.ops.attention')


def qkvb(b=2, h=2, n=16, d=8, dv=None, bias_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, n, d, generator=g).requires_grad_() for _ in range(2))
    v = torch.randn(b, h, n, dv or d, generator=g).requires_grad_()
    bias = (torch.randn(1, h, n, n, generator=g) * 0.5).requires_grad_(bias_grad)
    return q, k, v, bias


def naive_with_grads(q, k, v, bias):
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v, bias)]
    out = A.naive_attention(*leaves)
    return out, torch.autograd.grad(out.sum(), leaves)


@pytest.fixture(autouse=True)
def fresh_once_sets(monkeypatch):
    monkeypatch.setattr(A, '_WARNED', set())
    monkeypatch.setattr(A, '_LOGGED', set())


def test_cpu_choice_and_reason():
    q, k, v, bias = qkvb()
    name, why = A.choose_backend('auto', q, bias, v, k)
    assert name == 'chunked' and 'needs a gradient' in why and 'math path' in why
    with torch.no_grad():
        assert A.choose_backend('auto', q, bias, v, k) == ('sdpa', 'the fused CPU flash kernel takes the inputs')
    name, why = A.choose_backend('auto', q, None, torch.randn(2, 2, 16, 4), k)
    assert name == 'chunked' and 'Dqk == Dv' in why


def test_cuda_choice_follows_the_fused_kernel_probe(monkeypatch):
    """On CUDA ``auto`` asks PyTorch which fused SDPA kernel takes the inputs; with a bias it never
    picks flash_attn, and where no fused kernel fits it runs chunked, saying so."""
    q, k, v, bias = qkvb()
    on_cuda = torch.device('cuda')
    monkeypatch.setattr(torch.Tensor, 'device', property(lambda t: on_cuda))
    monkeypatch.setattr(A, '_flash_attn_func', lambda *a, **kw: None)  # "installed"
    monkeypatch.setattr(A, '_cuda_fused_sdpa_kernels', lambda q, k, v, bias: ['memory-efficient'])
    name, why = A.choose_backend('auto', q, bias, v, k)
    assert name == 'sdpa' and 'memory-efficient' in why and 'bias (with its gradient)' in why
    name, why = A.choose_backend('auto', q.bfloat16(), None, v.bfloat16(), k.bfloat16())
    assert name == 'flash_attn'  # no bias, half precision
    monkeypatch.setattr(A, '_cuda_fused_sdpa_kernels', lambda q, k, v, bias: [])
    name, why = A.choose_backend('auto', q, bias, v, k)
    assert name == 'chunked' and 'no fused CUDA SDPA kernel' in why
    with pytest.warns(UserWarning, match='no fused CUDA SDPA kernel'):
        assert A.choose_backend('sdpa', q, bias, v, k)[0] == 'chunked'


def test_explicit_sdpa_never_runs_the_math_path_silently():
    """CPU SDPA with a bias that needs a gradient would run its N x N math path: ``sdpa`` then
    warns and runs the exact chunked backend; values and gradients equal naive's."""
    q, k, v, bias = qkvb()
    with pytest.warns(UserWarning, match="math path.*using 'chunked'"):
        out = A.attention(q, k, v, bias, backend='sdpa')
    grads = torch.autograd.grad(out.sum(), (q, k, v, bias))
    ref, ref_grads = naive_with_grads(q, k, v, bias)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g.double(), r, atol=1e-5)


def test_auto_logs_its_choice_once(caplog):
    q, k, v, bias = qkvb()
    with caplog.at_level(logging.INFO, logger=A.__name__):
        for _ in range(3):
            A.attention(q, k, v, bias)
        with torch.no_grad():
            A.attention(q, k, v, bias)
    lines = [r.getMessage() for r in caplog.records if r.name == A.__name__]
    assert len(lines) == 2, lines  # one per kind of input: training (chunked), inference (sdpa)
    assert "picked 'chunked'" in lines[0] and 'bias (1, 2, 16, 16) (requires grad)' in lines[0]
    assert "picked 'sdpa'" in lines[1]


def broken(*args, **kwargs):
    raise RuntimeError('No available kernel.  Aborting execution.')


def test_runtime_failure_is_an_error_naming_the_inputs(monkeypatch):
    monkeypatch.setitem(A._IMPLS, 'sdpa', broken)
    q, k, v, bias = qkvb(bias_grad=False)
    with pytest.raises(A.FusedAttentionError) as info:
        A.attention(q, k, v, bias)
    message = str(info.value)
    assert "'sdpa' failed at run time" in message and 'q (2, 2, 16, 8)' in message
    assert 'bias (1, 2, 16, 16)' in message and 'No available kernel' in message
    assert 'attn_fallback=True' in message


def test_runtime_failure_falls_back_when_allowed(monkeypatch):
    monkeypatch.setitem(A._IMPLS, 'sdpa', broken)
    q, k, v, bias = qkvb(bias_grad=False)
    with pytest.warns(UserWarning, match="falling back to 'chunked' \\(allowed\\)"):
        out = A.attention(q, k, v, bias, fallback=True)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    ref, ref_grads = naive_with_grads(q, k, v, bias)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    for g, r in zip(grads, ref_grads[:3]):
        assert torch.allclose(g.double(), r, atol=1e-5)


def test_archs_pass_the_fallback_option(monkeypatch):
    """``attn_fallback`` of ESC and AgileIR reaches the dispatcher: off, a failing fused kernel
    stops inference with the error; on, the output equals the naive backend's."""
    monkeypatch.setitem(A._IMPLS, 'sdpa', broken)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    # AgileIR with qk_dim = embed_dim: equal head dims, which the fused CPU kernel needs
    tiny = {ESC: dict(dim=8, pdim=4, kernel_size=3, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                      upscaling_factor=2),
            AgileIR: dict(upscale=2, depths=[2], embed_dim=12, num_heads=[2], qk_dim=12, window_size=4, mlp_ratio=2,
                          drop_path_rate=0.0)}
    for cls, cfg in tiny.items():
        torch.manual_seed(0)
        ref = cls(attn_backend='naive', **cfg).eval()
        strict = cls(attn_backend='sdpa', **cfg).eval()
        lenient = cls(attn_backend='sdpa', attn_fallback=True, **cfg).eval()
        strict.load_state_dict(ref.state_dict())
        lenient.load_state_dict(ref.state_dict())
        with torch.no_grad():
            with pytest.raises(A.FusedAttentionError, match='attn_fallback=True'):
                strict(x)
            with pytest.warns(UserWarning, match='allowed'):
                out = lenient(x)
            assert torch.allclose(out, ref(x), atol=1e-5), cls.__name__
        A._WARNED.clear()


def test_cuda_probe_sees_padded_head_dims_and_runs_once_per_kind(monkeypatch):
    """The fused-kernel probe is asked about head dims zero-padded to a multiple of 8 (AgileIR's
    Q/K head dim is 5), with the bias's shape, strides and grad flag, and only once per kind of
    input (it runs on every attention call otherwise)."""
    monkeypatch.setattr(A, '_PROBED', {})
    seen = []

    def efficient(params, debug):
        seen.append((tuple(params.query.shape), tuple(params.value.shape), tuple(params.attn_mask.stride()),
                     params.attn_mask.requires_grad))
        return True
    monkeypatch.setattr(torch.backends.cuda, 'can_use_efficient_attention', efficient)
    monkeypatch.setattr(torch.backends.cuda, 'can_use_cudnn_attention', lambda params, debug: False)
    q, k, v, bias = qkvb(b=3, h=2, n=16, d=5, dv=10)
    broadcast = bias.expand(3, 2, 16, 16)
    for _ in range(3):
        assert A._cuda_fused_sdpa_kernels(q, k, v, broadcast) == ['memory-efficient']
    assert seen == [((3, 2, 16, 8), (3, 2, 16, 16), (0, 256, 16, 1), True)]
    with torch.no_grad():
        A._cuda_fused_sdpa_kernels(q, k, v, broadcast)
    assert len(seen) == 2 and seen[-1][-1] is False  # another kind: no gradient needed
