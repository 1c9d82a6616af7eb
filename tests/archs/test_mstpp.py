"""MST++: official checkpoint layout (names, shapes, parameter count, `module.`-prefixed
`state_dict` loading), S-MSA and the whole network against an independent functional
reference, any-size inputs, and the GLMHA variant."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from agile_ir_plugin.archs import MSTPlusPlus
from agile_ir_plugin.archs.glmha import GLMHA
from agile_ir_plugin.archs.mstpp_arch import SMSA, load_official_mstpp, official_mstpp_state_dict
from agile_ir_plugin.profiling import count_macs, count_params
from conftest import randomize

OFFICIAL = json.loads((Path(__file__).parent / 'data' / 'mstpp_official_keys.json').read_text())
TINY = dict(in_channels=3, out_channels=8, n_feat=8, stage=2)


# --- an independent functional reference (explicit einsum / formulas, state-dict driven) -------
def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / 2 ** 0.5))


def ref_smsa(x, sd, p, heads):
    """x: (B, H, W, C).  A = softmax(rescale * k^ q^T) over q, out = proj(A v) + pos(v)."""
    B, H, W, C = x.shape
    d = C // heads
    q, k, v = (torch.einsum('bhwc,oc->bohw', x, sd[p + name + '.weight']) for name in ('to_q', 'to_k', 'to_v'))
    qh, kh, vh = (t.reshape(B, heads, d, H * W) for t in (q, k, v))
    qh = qh / qh.norm(dim=-1, keepdim=True)
    kh = kh / kh.norm(dim=-1, keepdim=True)
    logits = torch.einsum('bhin,bhjn->bhij', kh, qh) * sd[p + 'rescale']
    attn = logits.softmax(-1)
    out = torch.einsum('bhij,bhjn->bhin', attn, vh).reshape(B, C, H, W)
    out = torch.einsum('bchw,oc->bhwo', out, sd[p + 'proj.weight']) + sd[p + 'proj.bias']
    pos = F.conv2d(gelu(F.conv2d(v, sd[p + 'pos_emb.0.weight'], padding=1, groups=C)),
                   sd[p + 'pos_emb.2.weight'], padding=1, groups=C)
    return out + pos.permute(0, 2, 3, 1)


def ref_msab(x, sd, p, heads):
    x = x.permute(0, 2, 3, 1)
    i = 0
    while f'{p}blocks.{i}.0.rescale' in sd:
        b = f'{p}blocks.{i}.'
        x = x + ref_smsa(x, sd, b + '0.', heads)
        mu, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        y = ((x - mu) / torch.sqrt(var + 1e-5) * sd[b + '1.norm.weight'] + sd[b + '1.norm.bias']).permute(0, 3, 1, 2)
        y = gelu(F.conv2d(y, sd[b + '1.fn.net.0.weight']))
        y = gelu(F.conv2d(y, sd[b + '1.fn.net.2.weight'], padding=1, groups=y.shape[1]))
        x = x + F.conv2d(y, sd[b + '1.fn.net.4.weight']).permute(0, 2, 3, 1)
        i += 1
    return x.permute(0, 3, 1, 2)


def ref_mst(x, sd, p):
    fea = F.conv2d(x, sd[p + 'embedding.weight'], padding=1)
    e1 = ref_msab(fea, sd, p + 'encoder_layers.0.0.', 1)
    e2 = F.conv2d(e1, sd[p + 'encoder_layers.0.1.weight'], stride=2, padding=1)
    e2 = ref_msab(e2, sd, p + 'encoder_layers.1.0.', 2)
    b = ref_msab(F.conv2d(e2, sd[p + 'encoder_layers.1.1.weight'], stride=2, padding=1), sd, p + 'bottleneck.', 4)
    for i, skip, heads in [(0, e2, 2), (1, e1, 1)]:
        q = f'{p}decoder_layers.{i}.'
        up = F.conv_transpose2d(b, sd[q + '0.weight'], sd[q + '0.bias'], stride=2)
        b = ref_msab(F.conv2d(torch.cat([up, skip], 1), sd[q + '1.weight']), sd, q + '2.', heads)
    return F.conv2d(b, sd[p + 'mapping.weight'], padding=1) + x


def ref_mstpp(x, sd, stages):
    H, W = x.shape[-2:]
    x = F.pad(x, (0, -W % 8, 0, -H % 8), mode='reflect')
    x = F.conv2d(x, sd['conv_in.weight'], padding=1)
    h = x
    for s in range(stages):
        h = ref_mst(h, sd, f'body.{s}.')
    return (F.conv2d(h, sd['conv_out.weight'], padding=1) + x)[..., :H, :W]


# --- official layout --------------------------------------------------------------------------
def test_official_parameter_count_and_keys_and_shapes():
    with torch.device('meta'):
        model = MSTPlusPlus()
    assert count_params(model) == 1_619_625 == OFFICIAL['num_params']
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == OFFICIAL['keys']


def test_official_checkpoint_with_module_prefix_loads_strictly(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {'module.' + k: torch.randn(shape, generator=g) for k, shape in OFFICIAL['keys'].items()}
    torch.save({'epoch': 1, 'iter': 10, 'state_dict': state, 'optimizer': {}}, tmp_path / 'net.pth')
    model = MSTPlusPlus()
    load_official_mstpp(model, tmp_path / 'net.pth')
    assert all(torch.equal(model.state_dict()[k[len('module.'):]], v) for k, v in state.items())
    assert set(official_mstpp_state_dict(state)) == set(OFFICIAL['keys'])  # bare dicts work too
    with pytest.raises(RuntimeError):
        load_official_mstpp(MSTPlusPlus(attn='glmha'), tmp_path / 'net.pth')


# --- numerics against the reference -----------------------------------------------------------
@pytest.mark.parametrize('heads', [1, 3])
def test_smsa_matches_reference_values_and_grads(heads):
    torch.manual_seed(0)
    C = 6 * heads
    m = randomize(SMSA(C, C // heads, heads).double())
    x = torch.randn(2, 5, 7, C, dtype=torch.float64, requires_grad=True)
    out = m(x)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    sd = {n: p.detach().clone().requires_grad_() for n, p in m.named_parameters()}
    x2 = x.detach().clone().requires_grad_()
    ref = ref_smsa(x2, sd, '', heads)
    (ref * weight).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-10, rtol=1e-9)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, sd[n].grad, atol=1e-10, rtol=1e-9, msg=n)


@pytest.mark.parametrize('size', [(16, 16), (13, 21)])
def test_network_matches_reference(size):
    torch.manual_seed(0)
    model = randomize(MSTPlusPlus(**TINY))
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = model(x)
        ref = ref_mstpp(x, dict(model.state_dict()), TINY['stage'])
    assert out.shape == (1, 8, *size)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


# --- GLMHA host -------------------------------------------------------------------------------
def test_full_rank_glmha_with_identity_calibration_is_smsa():
    """GLMHA's full-rank queries play S-MSA's k (A = softmax(k q^T) has one row per k token), its
    keys S-MSA's q.  S-MSA's positional branch acts on v, GLMHA's on x: equal when W_v = I."""
    torch.manual_seed(0)
    C, heads = 12, 2
    smsa = randomize(SMSA(C, C // heads, heads).double())
    with torch.no_grad():
        smsa.to_v.weight.copy_(torch.eye(C))
    glmha = GLMHA(C, heads, reduction=1, bias=False, proj_bias=True, dwconv=False, pos_emb=True).double()
    with torch.no_grad():
        glmha.qkv.weight.copy_(torch.cat([smsa.to_k.weight, smsa.to_q.weight, smsa.to_v.weight])[:, :, None, None])
        glmha.temperature.copy_(smsa.rescale)
        glmha.project_out.weight.copy_(smsa.proj.weight[:, :, None, None])
        glmha.project_out.bias.copy_(smsa.proj.bias)
        glmha.pos_emb.load_state_dict(smsa.pos_emb.state_dict())
    x = torch.randn(2, 6, 5, C, dtype=torch.float64)
    torch.testing.assert_close(glmha(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), smsa(x), atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize('size', [(8, 8), (13, 5), (3, 7)])
def test_glmha_host_finite_values_and_grads(size):
    torch.manual_seed(0)
    model = MSTPlusPlus(**TINY, attn='glmha', glmha_reduction=[2, 4, 8])
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 8, *size)
    out.abs().mean().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_glmha_ranks_per_level_init_and_bad_arguments():
    model = MSTPlusPlus(attn='glmha', glmha_reduction=[1, 2, 4])
    ranks = sorted({(m.dim, m.rank) for m in model.modules() if isinstance(m, GLMHA)})
    assert ranks == [(31, 31), (62, 16), (124, 8)]  # every head has 31 channels
    calib = [m.calibration(torch.rand(2, m.dim, 4, 4)) for m in model.modules() if isinstance(m, GLMHA)]
    assert all(torch.equal(g, torch.ones_like(g)) for g in calib)  # identity despite MST's Linear init
    with pytest.raises(ValueError, match='attn'):
        MSTPlusPlus(attn='msa')
    with pytest.raises(ValueError, match='n_feat'):
        MSTPlusPlus(out_channels=16)


def test_glmha_savings_at_256_and_why_the_restormer_targets_are_out_of_reach():
    """MST++ spends only ~5 GMACs and ~0.3M parameters in all its S-MSAs together: even deleting
    them could not save the 7.7 GMACs / 370K parameters GLMHA saves in Restormer."""
    with torch.device('meta'):
        host, glmha, x = MSTPlusPlus(), MSTPlusPlus(attn='glmha'), torch.empty(1, 3, 256, 256)
        calls = []
        hooks = [m.register_forward_hook(lambda mod, args, out: calls.append((mod, args)))
                 for m in host.modules() if isinstance(m, SMSA)]
        with torch.no_grad():
            host(x)
        for h in hooks:
            h.remove()
        attn_macs = sum(count_macs(mod, *args) for mod, args in calls)
        attn_params = sum(count_params(mod) for mod, _ in calls)
        host_macs, glmha_macs = count_macs(host, x), count_macs(glmha, x)
    assert len(calls) == 15 and attn_macs < 7.7e9 and attn_params < 370_000
    assert host_macs - glmha_macs > 0.3 * attn_macs
    assert count_params(glmha) < count_params(host)
