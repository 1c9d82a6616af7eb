"""ESC training keeps less for backward with the same values and gradients: each ConvFFN keeps
two of its three hidden maps (the GELU between them is recomputed in backward), and the window
attention keeps its small bias table instead of the (heads, N, N) bias (``HankelBias``: the chunked
backward copies each chunk's rows from the table).  The reference is the same network with both
switched off (autograd keeps everything), in float64."""
import pytest
import torch
import torch.nn.functional as F

import agile_ir_plugin.archs.esc_arch as E
from agile_ir_plugin.profiling import saved_activation_bytes

TINY = dict(dim=16, pdim=8, kernel_size=5, n_blocks=2, conv_blocks=2, window_size=8, num_heads=2, exp_ratio=1.25)


def build(cls=E.ESC, seed=0, **kw):
    torch.manual_seed(seed)
    model = cls(upscaling_factor=2, **dict(TINY, **kw)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def grads(model, x, target):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = model(x)
    F.l1_loss(out, target).backward()
    return out.detach(), [x.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize('cls', [E.ESC, E.ESCFP])
@pytest.mark.parametrize('backend', ['auto', 'naive'])
def test_same_values_and_gradients_as_keeping_everything(monkeypatch, cls, backend):
    model = build(cls, attn_backend=backend)
    x = torch.rand(2, 3, 12, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.rand(2, 3, 24, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out, got = grads(model, x, target)
    monkeypatch.setattr(E, '_training_graph', lambda t: False)  # keep everything (the code before)
    ref_out, ref = grads(model, x, target)
    assert torch.equal(out, ref_out)
    for g, r in zip(got, ref):
        assert torch.allclose(g, r, rtol=0, atol=1e-13)


def test_saved_bytes_drop_by_one_hidden_map_per_ffn_and_the_bias(monkeypatch):
    model = build(attn_backend='chunked')  # keeps the bias for its backward (naive keeps the probabilities)
    h = w = 16  # one window of 8 needs no padding at 16 x 16: four windows
    x = torch.rand(1, 3, h, w, dtype=torch.float64, requires_grad=True)
    new, _ = saved_activation_bytes(model, x, model=model)
    monkeypatch.setattr(E, '_training_graph', lambda t: False)
    old, _ = saved_activation_bytes(model, x, model=model)
    n_blocks, conv_blocks, dim, heads, ws = (TINY[k] for k in ('n_blocks', 'conv_blocks', 'dim', 'num_heads',
                                                                'window_size'))
    ffn_hidden = [int(dim * 2)] + [int(dim * TINY['exp_ratio'])] * conv_blocks  # the block's proj, then ConvFFNs
    bias, table = heads * (ws * ws) ** 2 * 8, heads * (2 * ws - 1) ** 2 * 8  # the table is kept instead
    per_block = sum(c * h * w * 8 for c in ffn_hidden) + bias - table
    assert old - new == n_blocks * per_block


def test_enclosing_saved_tensor_hooks_still_see_the_attention_tensors():
    """Enclosing saved-tensor hooks (a memory measurement, ``save_on_cpu``) see q, k, v of the
    attention, and no (heads, N, N) bias is kept."""
    model = build(attn_backend='chunked')
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    qkv_shape = (4, TINY['num_heads'], TINY['window_size'] ** 2, TINY['dim'] // TINY['num_heads'])
    assert shapes.count(qkv_shape) >= 4 * TINY['n_blocks']  # q, k, v, out of each block
    assert (1, TINY['num_heads'], 64, 64) not in shapes  # the gathered bias is not kept
