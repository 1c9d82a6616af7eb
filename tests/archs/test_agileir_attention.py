"""AgileIR's hand-written window attention (``_WindowAttentionProj``: the recompute path's
attention + output projection with its own backward, no autograd in backward) against plain
autograd through the naive attention, in float64: values and the gradients of every input (the
Q/K/V windows, the relative-position table, the projection) for regular and shifted windows,
one and two head groups, the windows in one chunk or in several."""
import pytest
import torch

from agile_ir_plugin.archs import AgileIR
from agile_ir_plugin.archs import agileir_arch
from agile_ir_plugin.archs.agileir_arch import GroupShiftedWindowAttention


def _attention(groups, qk_dim, recompute):
    torch.manual_seed(0)
    attn = GroupShiftedWindowAttention(12, 4, 4, qk_dim, groups, attn_backend='naive', recompute=recompute).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.5)
    return attn


def _grads(attn, qkv, mask, weights):
    out = attn(qkv, mask)
    params = (attn.relative_position_bias_table, attn.proj.weight, attn.proj.bias)  # qkv: projected outside
    leaves = [t for t in (qkv, *params) if t.requires_grad]
    return out, out.grad_fn, torch.autograd.grad((out * weights).sum(), leaves)


@pytest.mark.parametrize('qkv_grad', [True, False])
@pytest.mark.parametrize('chunk_windows', [None, 4])
@pytest.mark.parametrize('shifted', [False, True])
@pytest.mark.parametrize('groups,qk_dim', [(1, 12), (2, 8)])
def test_hand_written_attention_matches_autograd(groups, qk_dim, shifted, qkv_grad, chunk_windows, monkeypatch):
    if chunk_windows:  # chunks of 4 windows over both images: [0, 4), [4, 8) (across them), [8, 12)
        monkeypatch.setattr(agileir_arch, '_SCORES_PER_CHUNK', chunk_windows * 4 * 16 * 16 // torch.get_num_threads())
    ours, ref = _attention(groups, qk_dim, True), _attention(groups, qk_dim, False)
    geometry = AgileIR(window_size=4).geometry(8, 12, torch.device('cpu'), torch.float64)
    mask = geometry['mask'] if shifted else None  # (6, 16, 16): 2 x 3 windows of 4 x 4 tokens
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 6, 16, 2 * qk_dim + 12, dtype=torch.float64, generator=g).requires_grad_(qkv_grad)
    weights = torch.randn(2, 6, 16, 12, dtype=torch.float64, generator=g)
    out, grad_fn, grads = _grads(ours, qkv, mask, weights)
    ref_out, ref_fn, ref_grads = _grads(ref, qkv, mask, weights)
    assert type(grad_fn).__name__ == '_WindowAttentionProjBackward'  # the hand-written path ran
    assert type(ref_fn).__name__ != '_WindowAttentionProjBackward'
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    assert len(grads) == len(ref_grads) == 3 + qkv_grad
    for got, want in zip(grads, ref_grads):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_hand_written_attention_not_under_autocast_or_other_backends():
    """Autocast (bf16 training) and the other backends keep the generic recompute path."""
    attn = _attention(2, 8, True).float()
    qkv = torch.randn(1, 6, 16, 28, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert type(attn(qkv).grad_fn).__name__ != '_WindowAttentionProjBackward'
    attn.attn_backend = 'chunked'
    assert type(attn(qkv).grad_fn).__name__ != '_WindowAttentionProjBackward'
    attn.attn_backend = 'auto'  # on CPU with recompute: naive, so the hand-written path
    assert type(attn(qkv).grad_fn).__name__ == '_WindowAttentionProjBackward'


@pytest.mark.parametrize('shift', [0, 2])
def test_hand_written_layer_matches_autograd(shift):
    """A whole GSWA layer in float64 (token permutations, LayerNorm -> Q/K/V and MLP recompute around
    the hand-written attention) against plain autograd."""
    from agile_ir_plugin.archs.agileir_arch import GSWATransformerLayer
    layers = []
    for recompute in (True, False):
        torch.manual_seed(0)
        layer = GSWATransformerLayer(12, 4, 4, shift, qk_dim=8, num_groups=2, attn_backend='naive',
                                     recompute=recompute).double()
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.5)
        layers.append(layer)
    geometry = AgileIR(window_size=4).geometry(8, 12, torch.device('cpu'), torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 12, 12, dtype=torch.float64, generator=g)
    weights = torch.randn(2, 8, 12, 12, dtype=torch.float64, generator=g)
    results = []
    for layer in layers:
        xi = x.clone().requires_grad_()
        out = layer(xi, geometry)
        (out * weights).sum().backward()
        results.append((out, xi.grad, {n: p.grad for n, p in layer.named_parameters()}))
    (out, gx, grads), (ref_out, ref_gx, ref_grads) = results
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-10, atol=1e-12)
    for name, want in ref_grads.items():
        assert want.abs().sum() > 0, name
        torch.testing.assert_close(grads[name], want, rtol=1e-10, atol=1e-12, msg=lambda m: f'{name}: {m}')
