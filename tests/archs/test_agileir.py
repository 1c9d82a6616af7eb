"""AgileIR / GSWA: every attention backend (and the activation-recompute path) against the plain
naive reference in values and gradients, exact pad/crop of odd sizes, equivalence with BasicSR's
own SwinIR when GSWA has one group and full Q/K width, parameter and memory budgets against
SwinIR-light, and the options files (SwinIR-light's recipe, smoke-trained through tools/train.py)."""
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import agile_ir_plugin  # noqa: F401  (compat fixes before basicsr)
from agile_ir_plugin.archs import AgileIR
from agile_ir_plugin.ops.attention import available_backends
from agile_ir_plugin.profiling import count_params, saved_activation_bytes

from conftest import REPO_ROOT, dump_yaml, load_yaml, run_tool, shrink_sr_options

LIGHT = dict(in_chans=3, img_size=64, window_size=8, img_range=1., depths=[6, 6, 6, 6], embed_dim=60,
             num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv')
TINY = dict(upscale=2, img_size=16, window_size=4, depths=[2], embed_dim=12, num_heads=[4], mlp_ratio=2,
            drop_path_rate=0.)


def _swinir(**kwargs):
    from basicsr.archs.swinir_arch import SwinIR
    return SwinIR(**kwargs)


def _perturb(model, std=0.05, seed=0):
    """Make every parameter (LayerNorm affine, biases, bias tables) non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def _run(model, x):
    x = x.clone().requires_grad_()
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), x.grad, {n: p.grad for n, p in model.named_parameters()}


# ------------------------------------------------------------------ backends and recompute
@pytest.mark.parametrize('recompute', [True, False])
@pytest.mark.parametrize('backend', available_backends())
def test_backends_match_naive_reference(backend, recompute):
    torch.manual_seed(0)
    cfg = dict(TINY, num_groups=2, qk_dim=8)  # 4 heads in 2 groups, Q/K 2 per head, V 3 per head
    ref = _perturb(AgileIR(**cfg, attn_backend='naive', recompute=False))
    model = AgileIR(**cfg, attn_backend=backend, recompute=recompute)
    model.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 9, 14)  # odd size: padded to 12 x 16, so shifted windows and masks are used
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a backend without a CPU backward falls back, with a warning
        out, gx, grads = _run(model, x)
    ref_out, ref_gx, ref_grads = _run(ref, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-4, atol=1e-6)
    for name, g in ref_grads.items():
        assert g is not None and g.abs().sum() > 0, name
        # fp32 sums in another order: tolerance relative to the tensor's scale
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=2e-5 * g.abs().max().item(),
                                   msg=lambda m: f'{name}: {m}')


def test_recompute_under_autocast_with_backward_outside_it():
    """Mixed precision as torch recommends and our trainer does: forward under autocast(bf16),
    backward outside it.  The recomputed prefixes re-run under the forward's autocast state, so
    values and gradients match plain autograd (recompute=False) under the same autocast, and the
    parameter gradients stay fp32 (before the fix: "mat1 and mat2 must have the same dtype")."""
    torch.manual_seed(0)
    cfg = dict(TINY, num_groups=2, qk_dim=8)
    ref = _perturb(AgileIR(**cfg, recompute=False))
    model = AgileIR(**cfg, recompute=True)
    model.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 9, 14)
    results = []
    for m in (model, ref):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = m(x)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.float(), {n: p.grad for n, p in m.named_parameters()}))
    (out, grads), (ref_out, ref_grads) = results
    # the attention backends differ (recompute runs 'naive' on CPU): bf16 rounding apart
    torch.testing.assert_close(out, ref_out, rtol=2e-2, atol=2e-2)
    for name, g in ref_grads.items():
        assert grads[name].dtype == torch.float32, name
        # bf16 products summed in another order: tolerance relative to the tensor's scale
        torch.testing.assert_close(grads[name], g, rtol=2e-2, atol=2e-2 * g.abs().max().item(),
                                   msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('backend', available_backends())
def test_backends_match_in_inference(backend):
    torch.manual_seed(0)
    ref = _perturb(AgileIR(**TINY, attn_backend='naive')).eval()
    model = AgileIR(**TINY, attn_backend=backend).eval()
    model.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 12, 8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ padding
@pytest.mark.parametrize('size', [(9, 14), (5, 7), (12, 16)])
def test_odd_sizes_are_padded_and_cropped_exactly(size):
    torch.manual_seed(0)
    model = _perturb(AgileIR(**dict(TINY, upscale=3))).eval()
    x = torch.rand(1, 3, *size)
    h, w = size
    ph, pw = (-h) % 4, (-w) % 4
    padded = F.pad(x, (0, pw, 0, ph), mode='reflect') if (ph or pw) else x
    with torch.no_grad():
        out = model(x)
        full = model(padded)
    assert out.shape == (1, 3, 3 * h, 3 * w)
    assert full.shape == (1, 3, 3 * (h + ph), 3 * (w + pw))
    torch.testing.assert_close(out, full[..., :3 * h, :3 * w], rtol=0, atol=1e-6)


def test_input_smaller_than_window():
    model = AgileIR(**TINY).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 3, 2)).shape == (1, 3, 6, 4)


def test_shift_mask_is_cached_per_size():
    model = AgileIR(**TINY).eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 12))
        model(torch.rand(2, 3, 7, 10))  # pads to the same 8 x 12
    assert len(model._geometry_cache) == 1
    mask = model.shift_mask(8, 12, torch.device('cpu'), torch.float32)
    assert mask is model.shift_mask(8, 12, torch.device('cpu'), torch.float32)
    assert mask is not model.shift_mask(8, 16, torch.device('cpu'), torch.float32)


@pytest.mark.parametrize('shift', [0, 2])
def test_window_order_is_roll_then_partition(shift):
    from agile_ir_plugin.archs.agileir_arch import window_order
    from agile_ir_plugin.ops.window import window_partition
    x = torch.randn(2, 8, 12, 5)
    perm, inv = window_order(8, 12, 4, shift)
    expected = window_partition(torch.roll(x, shifts=(-shift, -shift), dims=(1, 2)), 4).reshape(2, -1, 5)
    assert torch.equal(x.reshape(2, -1, 5)[:, perm], expected)
    assert torch.equal(expected[:, inv], x.reshape(2, -1, 5))


# ------------------------------------------------------------------ GSWA(1 group, full Q/K) == SwinIR
def _swinir_to_agileir(state):
    """BasicSR SwinIR state dict -> AgileIR's (same names but the patch norm; no index/mask buffers)."""
    out = {}
    for key, value in state.items():
        if key.endswith(('relative_position_index', 'attn_mask')):
            continue
        out[key.replace('patch_embed.norm.', 'patch_norm.')] = value
    return out


def test_one_group_full_qk_is_swinir():
    torch.manual_seed(0)
    cfg = dict(TINY, upsampler='pixelshuffledirect', resi_connection='1conv', img_range=1.)
    swinir = _perturb(_swinir(**cfg)).eval()
    model = AgileIR(**cfg, num_groups=1, qk_dim=cfg['embed_dim']).eval()
    model.load_state_dict(_swinir_to_agileir(swinir.state_dict()), strict=True)
    assert count_params(model) == count_params(swinir)
    for size in [(16, 16), (8, 12)]:  # the training size (SwinIR's stored mask) and another one
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(model(x), swinir(x), rtol=1e-5, atol=1e-5)
    # and the gradients w.r.t. the input agree (train mode: drop_path_rate is 0 in TINY)
    swinir.train(), model.train()
    x = torch.rand(1, 3, 16, 16)
    _, gx_model, _ = _run(model, x)
    _, gx_swinir, _ = _run(swinir, x)
    torch.testing.assert_close(gx_model, gx_swinir, rtol=1e-4, atol=1e-6)


def test_grouped_qkv_is_block_diagonal():
    model = AgileIR(**TINY, num_groups=2, qk_dim=8)
    qkv = model.layers[0].residual_group.blocks[0].attn.qkv
    dense = qkv.dense_weight()
    assert dense.shape == (2 * 8 + 12, 12)
    half_out, half_in = dense.shape[0] // 2, dense.shape[1] // 2
    assert torch.count_nonzero(dense[:half_out, half_in:]) == 0 and torch.count_nonzero(dense[half_out:, :half_in]) == 0
    assert qkv.weight.numel() == dense.numel() // 2


# ------------------------------------------------------------------ budgets vs SwinIR-light
def test_params_not_above_swinir_light():
    for scale in (2, 3, 4):
        ours, theirs = count_params(AgileIR(upscale=scale, **LIGHT)), count_params(_swinir(upscale=scale, **LIGHT))
        assert ours <= theirs, (scale, ours, theirs)


@pytest.mark.parametrize('shift', [0, 4])
def test_layer_saves_at_most_a_third_of_a_swinir_light_layer(shift):
    """Per transformer layer (where the memory goes), SwinIR-light width, 32 x 32 tokens."""
    from basicsr.archs.swinir_arch import SwinTransformerBlock

    from agile_ir_plugin.archs.agileir_arch import GSWATransformerLayer
    torch.manual_seed(0)
    theirs_layer = SwinTransformerBlock(60, (32, 32), 6, window_size=8, shift_size=shift, mlp_ratio=2)
    ours_layer = GSWATransformerLayer(60, 6, 8, shift, qk_dim=30, num_groups=2, mlp_ratio=2)
    x = torch.rand(2, 32, 32, 60, requires_grad=True)
    theirs, ref = saved_activation_bytes(lambda t: theirs_layer(t.flatten(1, 2), (32, 32)), x, model=theirs_layer)
    geometry = AgileIR(**dict(TINY, window_size=8)).geometry(32, 32, torch.device('cpu'), torch.float32)
    ours, out = saved_activation_bytes(ours_layer, x, geometry, model=ours_layer)
    assert out.shape == x.shape and ref.shape == (2, 32 * 32, 60)
    assert ours * 3 <= theirs, (ours, theirs)


@pytest.mark.slow
def test_network_saves_at_most_a_third_of_swinir_light():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    swinir = _swinir(upscale=4, **LIGHT)
    model = AgileIR(upscale=4, **LIGHT)
    theirs, _ = saved_activation_bytes(swinir, x, model=swinir)
    ours, out = saved_activation_bytes(model, x, model=model)
    assert out.shape == (1, 3, 64, 64)
    assert ours * 3 <= theirs, (ours, theirs)


# ------------------------------------------------------------------ options
OPTIONS = REPO_ROOT / 'options'
RECIPE_KEYS = ('model_type', 'num_gpu', 'manual_seed', 'path', 'val', 'logger', 'dist_params')


def _strip(opt):
    """An options dict without what may differ between SwinIR-light and AgileIR files."""
    opt = {k: v for k, v in opt.items() if k != 'name'}
    net = dict(opt['network_g'])
    for key in ('type', 'qk_dim', 'num_groups', 'attn_backend'):
        net.pop(key, None)
    opt['network_g'] = net
    return opt


def test_agileir_options_are_swinir_light_with_type_changed():
    swinir = load_yaml(OPTIONS / 'train_swinir_light_x4.yml')
    agile = load_yaml(OPTIONS / 'train_agileir_x4.yml')
    assert swinir['network_g']['type'] == 'SwinIR' and agile['network_g']['type'] == 'AgileIR'
    assert _strip(agile) == _strip(swinir)
    # SwinIR-light's recipe
    train = swinir['train']
    assert swinir['datasets']['train']['gt_size'] // swinir['scale'] == 64
    assert train['optim_g']['type'] == 'Adam' and float(train['optim_g']['lr']) == 2e-4
    assert int(float(train['total_iter'])) == 500000
    assert train['scheduler'] == {'type': 'MultiStepLR', 'milestones': [250000, 400000, 450000, 475000], 'gamma': 0.5}
    assert train['pixel_opt']['type'] == 'L1Loss'
    assert {k: swinir['network_g'][k] for k in LIGHT} == LIGHT


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_agileir_options_per_scale(scale):
    train = load_yaml(OPTIONS / f'train_agileir_x{scale}.yml')
    test = load_yaml(OPTIONS / f'test_agileir_x{scale}.yml')
    x4 = load_yaml(OPTIONS / 'train_agileir_x4.yml')
    assert train['scale'] == test['scale'] == train['network_g']['upscale'] == scale
    assert test['network_g'] == train['network_g']
    assert train['datasets']['train']['gt_size'] == 64 * scale
    assert train['train'] == x4['train']
    for opt in (train, test):
        for key, ds in opt['datasets'].items():
            if key != 'train':
                assert f'X{scale}' in ds['dataroot_lq'] or f'x{scale}' in ds['dataroot_lq'].lower()
    net = dict(train['network_g'])
    assert net.pop('type') == 'AgileIR'
    with torch.no_grad():
        assert AgileIR(**net).eval()(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8 * scale, 8 * scale)


def test_swinir_light_test_options_match_train():
    train = load_yaml(OPTIONS / 'train_swinir_light_x4.yml')
    test = load_yaml(OPTIONS / 'test_swinir_light_x4.yml')
    assert test['network_g'] == train['network_g'] and test['model_type'] == train['model_type']


@pytest.mark.slow
@pytest.mark.parametrize('name', ['train_agileir_x4.yml', 'train_swinir_light_x4.yml'])
def test_options_smoke_train(name, sr_pairs, tmp_path):
    root = sr_pairs(4, n=2, size=(64, 64))
    opt = shrink_sr_options(load_yaml(OPTIONS / name), root, scale=4, iters=2, gt_size=32, name='smoke')
    path = dump_yaml(opt, tmp_path / name)
    proc = run_tool('train', ['-opt', str(path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    models = list(Path(tmp_path, 'experiments', 'smoke', 'models').glob('net_g_*.pth'))
    assert models, 'no checkpoint written'
    if 'agileir' in name:  # the checkpoint loads back into the pure-torch arch
        state = torch.load(models[0], map_location='cpu')
        net = dict(opt['network_g'])
        net.pop('type')
        AgileIR(**net).load_state_dict(state.get('params', state))
