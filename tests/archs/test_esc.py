"""ESC / ESC-light / ESC-FP: official checkpoint layout and parameter counts, one block against an
independent straightforward reference, convert(), batch > 1, odd sizes, the x2 -> x4 output-conv
resize, backends, and a smoke training run of the options through tools/train.py."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import agile_ir_plugin  # noqa: F401  (compat fix + registration before basicsr)
from agile_ir_plugin.archs import ESC, ESCFP
from agile_ir_plugin.archs.esc_arch import (VARIANTS, ESCBlock, per_sample_depthwise_conv, reflect_pad_to_multiple,
                                            resize_to_img)
from agile_ir_plugin.profiling import count_params

from conftest import REPO_ROOT, dump_yaml, load_yaml, run_tool, shrink_sr_options, write_sr_pairs

OFFICIAL = json.loads((Path(__file__).parent / 'data' / 'esc_official_keys.json').read_text())['variants']
CLASSES = {'ESC': ESC, 'ESCFP': ESCFP}

# the paper's parameter counts (x2, x3, x4), as printed (K); 967,500 counted on the official code
PAPER_K = {'ESC': (947, 955, 968), 'ESC-light': (603.6, 612, 624), 'ESC-FP': (524, 530, 539)}

TINY = dict(dim=8, pdim=4, kernel_size=5, n_blocks=2, conv_blocks=2, window_size=4, num_heads=2, exp_ratio=1.25)


def build(variant, scale, **kw):
    cfg = dict(VARIANTS[variant])
    return CLASSES[cfg.pop('arch')](upscaling_factor=scale, **cfg, **kw)


def randomize(model, seed=0, std=0.1):
    """Random values everywhere (the zero-initialised dynamic-kernel convs included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


# --------------------------------------------------------------------------------------------
# official layout
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('variant', list(VARIANTS))
def test_param_counts_and_state_dict_layout_match_official(variant):
    for i, scale in enumerate((2, 3, 4)):
        model = build(variant, scale)
        official = OFFICIAL[f'{variant}_x{scale}']
        n = count_params(model)
        assert n == official['num_params']
        paper = PAPER_K[variant][i]
        assert round(n / 1e3, 1 if paper % 1 else 0) == paper
        assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == official['keys']
    if variant == 'ESC':
        assert n == 967_500


def test_official_layout_state_dict_loads_strict_and_runs():
    """A state dict built only from the committed official key/shape list loads with strict=True,
    and the loaded values are the ones used."""
    official = OFFICIAL['ESC-light_x4']
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in official['keys']}
    model = build('ESC-light', 4)
    model.load_state_dict({'params_ema': sd}['params_ema'], strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k])
    with torch.no_grad():
        assert model(torch.rand(1, 3, 12, 10)).shape == (1, 3, 48, 40)


def test_registered_in_basicsr():
    from basicsr.utils.registry import ARCH_REGISTRY
    assert ARCH_REGISTRY.get('ESC') is ESC and ARCH_REGISTRY.get('ESCFP') is ESCFP


# --------------------------------------------------------------------------------------------
# an independent, straightforward reference of one block
# --------------------------------------------------------------------------------------------
def ref_layer_norm(x, w, b):
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * w[:, None, None] + b[:, None, None]


def ref_conv_ffn(x, p):
    hidden = F.gelu(F.conv2d(x, p['proj.weight'], p['proj.bias']))
    k = p['dwc.weight'].shape[-1]
    d = F.gelu(F.conv2d(hidden, p['dwc.weight'], p['dwc.bias'], padding=k // 2, groups=hidden.shape[1])) + hidden
    return F.conv2d(d, p['aggr.weight'], p['aggr.bias'])


def ref_reflect(x, ph, pw):
    """Reflect padding by explicit index mapping (bouncing between the borders)."""
    def idx(n, pad):
        out = []
        for i in range(n + pad):
            j = i
            while j >= n:
                j = 2 * (n - 1) - j
                j = abs(j)
            out.append(j)
        return torch.tensor(out)
    return x[:, :, idx(x.shape[2], ph)][:, :, :, idx(x.shape[3], pw)]


def ref_window_attention(x, p, ws, heads):
    b, c, h, w = x.shape
    xp = ref_reflect(x, -h % ws, -w % ws)
    qkv = F.conv2d(xp, p['to_qkv.weight'], p['to_qkv.bias'])
    d = c // heads
    table = p['relative_position_bias']
    bias = torch.empty(heads, ws * ws, ws * ws)
    for i in range(ws * ws):  # official order: offsets are (key - query)
        for j in range(ws * ws):
            rh, rw = j // ws - i // ws + ws - 1, j % ws - i % ws + ws - 1
            bias[:, i, j] = table[:, rh * (2 * ws - 1) + rw]
    out = torch.zeros(b, c, xp.shape[2], xp.shape[3])
    for n in range(b):
        for top in range(0, xp.shape[2], ws):
            for left in range(0, xp.shape[3], ws):
                win = qkv[n, :, top:top + ws, left:left + ws].reshape(3 * c, ws * ws)
                for hd in range(heads):
                    q = win[hd * d:(hd + 1) * d].t()
                    k = win[c + hd * d:c + (hd + 1) * d].t()
                    v = win[2 * c + hd * d:2 * c + (hd + 1) * d].t()
                    a = torch.softmax(q @ k.t() / d ** 0.5 + bias[hd], dim=-1)
                    out[n, hd * d:(hd + 1) * d, top:top + ws, left:left + ws] = (a @ v).t().reshape(d, ws, ws)
    return F.conv2d(out[:, :, :h, :w], p['to_out.weight'], p['to_out.bias'])


def ref_d4_average(k):
    """Mean over the 8 symmetries of the square, by explicit index maps."""
    n = k.shape[-1]
    views = []
    for transpose in (False, True):
        for fi in (False, True):
            for fj in (False, True):
                out = torch.empty_like(k)
                for i in range(n):
                    for j in range(n):
                        si, sj = (j, i) if transpose else (i, j)
                        si, sj = (n - 1 - si) if fi else si, (n - 1 - sj) if fj else sj
                        out[..., i, j] = k[..., si, sj]
                views.append(out)
    return sum(views) / 8


def ref_conv_attn(x, p, lk, pdim, fp, lk_spatial=None):
    b, _, h, w = x.shape
    x1 = x[:, :pdim]
    pre = 'plk.proj.' if fp else 'plk.dwc_proj.'
    y = torch.empty_like(x1)
    for n in range(b):  # one sample at a time
        pooled = x1[n].mean((1, 2))
        hid = F.gelu(p[pre + '1.weight'].flatten(1) @ pooled + p[pre + '1.bias'])
        dyn = (p[pre + '3.weight'].flatten(1) @ hid + p[pre + '3.bias']).view(pdim, 3, 3)
        if fp:
            mixed = F.conv2d(x1[n:n + 1], lk)
            k = lk_spatial.clone()
            c = k.shape[-1] // 2
            k[:, 0, c - 1:c + 2, c - 1:c + 2] += dyn
            y[n] = F.conv2d(mixed, k, padding=c, groups=pdim)[0]
        else:
            y[n] = (F.conv2d(x1[n:n + 1], lk, padding=lk.shape[-1] // 2)
                    + F.conv2d(x1[n:n + 1], dyn[:, None], padding=1, groups=pdim))[0]
    mixed = torch.cat([y, x[:, pdim:]], 1)
    return F.conv2d(mixed, p['aggr.weight'], p['aggr.bias'])


def ref_block(x, p, cfg, lk, fp=False, lk_spatial=None):
    sub = lambda prefix: {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}  # noqa: E731
    skip = x
    x = ref_conv_ffn(ref_layer_norm(x, p['ln_proj.weight'], p['ln_proj.bias']), sub('proj.'))
    x = x + ref_window_attention(ref_layer_norm(x, p['ln_attn.weight'], p['ln_attn.bias']), sub('attn.'),
                                 cfg['window_size'], cfg['num_heads'])
    for i in range(cfg['conv_blocks']):
        y = ref_layer_norm(x, p[f'lns.{i}.weight'], p[f'lns.{i}.bias']) if fp else x
        y = ref_conv_ffn(y, sub(f'convffns.{i}.'))
        x = x + ref_conv_attn(y, sub(f'pconvs.{i}.'), lk, cfg['pdim'], fp, lk_spatial)
    x = ref_layer_norm(x, p['ln_out.weight'], p['ln_out.bias'])
    return F.conv2d(x, p['conv_out.weight'], p['conv_out.bias'], padding=1) + skip


@pytest.mark.parametrize('fp', [False, True])
@pytest.mark.parametrize('size', [(8, 8), (7, 10)])  # whole windows; padded + cropped
def test_block_matches_independent_reference(fp, size):
    cfg = dict(TINY)
    torch.manual_seed(0)
    block = randomize(ESCBlock(cfg['dim'], cfg['pdim'], cfg['conv_blocks'], cfg['kernel_size'], cfg['window_size'],
                               cfg['num_heads'], cfg['exp_ratio'], fp=fp))
    p = {k: v.detach() for k, v in block.state_dict().items()}
    x = torch.randn(2, cfg['dim'], *size)
    if fp:
        lk, lk_spatial = torch.randn(4, 4, 1, 1), torch.randn(4, 1, 5, 5)
        ours = block(x, lk, lk_spatial)
        ref = ref_block(x, p, cfg, lk, fp=True, lk_spatial=lk_spatial)
    else:
        lk = torch.randn(4, 4, 5, 5)
        ours = block(x, lk)
        ref = ref_block(x, p, cfg, lk)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_network_head_and_tail_match_reference():
    """Whole tiny ESC / ESC-FP: blocks as checked above, the shared kernel through the 8-way
    average, nearest (ESC) / bicubic (ESC-FP) skip, pixel shuffle."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8)
    for cls in (ESC, ESCFP):
        model = randomize(cls(upscaling_factor=3, **TINY)).eval()
        p = {k: v.detach() for k, v in model.state_dict().items()}
        feat = F.conv2d(x, p['proj.weight'], p['proj.bias'], padding=1)
        h = feat
        for i in range(TINY['n_blocks']):
            bp = {k[len(f'blocks.{i}.'):]: v for k, v in p.items() if k.startswith(f'blocks.{i}.')}
            if cls is ESC:
                h = ref_block(h, bp, TINY, ref_d4_average(p['plk_filter']))
            else:
                h = ref_block(h, bp, TINY, p['lk_channel'], fp=True, lk_spatial=p['lk_spatial'])
        if cls is ESCFP:
            h = ref_layer_norm(h, p['ln_last.weight'], p['ln_last.bias'])
        h = F.conv2d(h, p['last.weight'], p['last.bias'], padding=1) + feat
        img = F.pixel_shuffle(F.conv2d(h, p['to_img.weight'], p['to_img.bias'], padding=1), 3)
        up = x[:, :, torch.arange(24) // 3][:, :, :, torch.arange(24) // 3] if cls is ESC else \
            F.interpolate(x, scale_factor=3, mode='bicubic')
        with torch.no_grad():
            assert torch.allclose(model(x), img + up, atol=1e-5)


# --------------------------------------------------------------------------------------------
# behaviour
# --------------------------------------------------------------------------------------------
def test_convert_folds_the_d4_average_and_keeps_outputs():
    torch.manual_seed(0)
    model = randomize(ESC(upscaling_factor=2, **TINY)).eval()
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        before = model(x)
        raw = model.plk_filter.clone()
        model.convert()
        assert torch.allclose(model.plk_filter, ref_d4_average(raw), atol=1e-7)
        k = model.plk_filter
        for sym in (k.flip(2), k.flip(3), k.transpose(2, 3)):  # invariant under the group
            assert torch.allclose(sym, k, atol=1e-7)
        assert torch.allclose(model(x), before, atol=1e-6)
        model.convert()  # idempotent
        assert torch.allclose(model(x), before, atol=1e-6)
    assert [k for k in model.state_dict()] == [k for k in ESC(upscaling_factor=2, **TINY).state_dict()]


@pytest.mark.parametrize('cls', [ESC, ESCFP])
def test_batch_equals_per_sample_in_train_and_eval(cls):
    torch.manual_seed(0)
    model = randomize(cls(upscaling_factor=2, **TINY))
    x = torch.rand(3, 3, 10, 7)
    for train in (True, False):
        model.train(train)
        batched = model(x)
        single = torch.cat([model(x[i:i + 1]) for i in range(3)])
        assert torch.allclose(batched, single, atol=1e-5)
    model.train()
    model.zero_grad()
    model(x).square().mean().backward()
    g_batch = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for i in range(3):
        (model(x[i:i + 1]).square().mean() / 3).backward()
    for gb, p in zip(g_batch, model.parameters()):
        assert torch.allclose(gb, p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('k', [3, 5])
def test_per_sample_conv_taps_equal_the_grouped_conv(k):
    """The export formulation (sum of shifted taps, batch-independent) is the eager one (one conv
    with groups=B*C): values and gradients w.r.t. input and kernels; odd H, W; a channel slice of
    a channels-last map as in the network; the default picks the grouped conv outside export."""
    torch.manual_seed(0)
    full = torch.randn(3, 7, 9, 13).contiguous(memory_format=torch.channels_last)
    kernel = torch.randn(3, 5, k, k)
    outs, grads = [], []
    for taps in (False, True):
        x, w = full.clone().requires_grad_(), kernel.clone().requires_grad_()
        out = per_sample_depthwise_conv(x[:, :5], w, taps=taps)
        out.backward(torch.cos(out.detach()))  # a non-uniform upstream gradient
        outs.append(out.detach())
        grads.append((x.grad, w.grad))
    ref = torch.stack([F.conv2d(full[n:n + 1, :5], kernel[n, :, None], padding=k // 2, groups=5)[0] for n in range(3)])
    assert outs[0].shape == (3, 5, 9, 13)
    assert torch.allclose(outs[0], ref, atol=1e-5)
    assert torch.allclose(outs[1], outs[0], atol=1e-5, rtol=1e-6)
    for g_taps, g_grouped in zip(grads[1], grads[0]):
        assert torch.allclose(g_taps, g_grouped, atol=1e-5, rtol=1e-6)
    assert torch.equal(per_sample_depthwise_conv(full[:, :5], kernel), outs[0])  # eager default: grouped


@pytest.mark.parametrize('cls', [ESC, ESCFP])
def test_export_formulation_gives_the_same_network(cls, monkeypatch):
    """While exporting, ConvAttn runs the per-sample kernels as taps (ESC-FP: shared depthwise conv
    + per-sample 3x3 taps; the attention with its gathered bias): same outputs and gradients as the
    eager path (float64: the formulations, not their fp32 rounding, are compared)."""
    from agile_ir_plugin.archs import esc_arch
    torch.manual_seed(0)
    model = randomize(cls(upscaling_factor=2, **TINY)).double()
    x = torch.rand(3, 3, 9, 11, dtype=torch.float64)
    results = []
    for exporting in (False, True):
        monkeypatch.setattr(esc_arch, '_exporting', lambda: exporting)
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out0, g0), (out1, g1) = results
    assert torch.allclose(out1, out0, atol=1e-6)
    for a, b in zip(g1, g0):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize('size', [(1, 1), (3, 2), (5, 13), (17, 9)])
def test_odd_and_tiny_sizes(size):
    """Any H x W: reflect padding to whole windows (repeated when the image is smaller than the
    pad), output cropped back to scale x input."""
    x = torch.rand(1, 8, *size)
    padded = reflect_pad_to_multiple(x, 8)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    if min(size) > 1:
        assert torch.equal(padded, ref_reflect(x, -size[0] % 8, -size[1] % 8))
    if size[0] > -size[0] % 8 and size[1] > -size[1] % 8:  # where F.pad's reflect is defined
        assert torch.equal(padded, F.pad(x, (0, -size[1] % 8, 0, -size[0] % 8), mode='reflect'))
    model = ESC(upscaling_factor=3, **dict(TINY, window_size=8)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, *size)).shape == (2, 3, 3 * size[0], 3 * size[1])


@pytest.mark.parametrize('cls', [ESC, ESCFP])
def test_backends_give_the_same_network(cls):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 9, 8)
    ref = randomize(cls(upscaling_factor=2, attn_backend='naive', **TINY))
    out_ref = ref(x)
    out_ref.square().mean().backward()
    for backend in ('auto', 'chunked', 'sdpa'):
        model = cls(upscaling_factor=2, attn_backend=backend, attn_type='Flex', **TINY)
        model.load_state_dict(ref.state_dict())
        out = model(x)
        out.square().mean().backward()
        assert torch.allclose(out, out_ref, atol=1e-5)
        for p, pr in zip(model.parameters(), ref.parameters()):
            assert torch.allclose(p.grad, pr.grad, atol=1e-5, rtol=1e-4)


def test_x2_checkpoint_initialises_x4_like_the_official_code():
    torch.manual_seed(0)
    x2 = randomize(ESC(upscaling_factor=2, **TINY))
    sd = x2.state_dict()
    x4 = ESC(upscaling_factor=4, **TINY)
    with pytest.raises(RuntimeError, match='size mismatch for to_img'):
        x4.load_state_dict(sd, strict=True)  # never resized without being asked
    x4.load_state_dict(x4.resize_state_dict(sd), strict=True)
    new = x4.state_dict()
    for k in sd:
        if not k.startswith('to_img.'):
            assert torch.equal(new[k], sd[k])
    # independent bilinear (align_corners=False) resize of each 2x2 sub-pixel grid to 4x4
    w2 = sd['to_img.weight'].view(3, 2, 2, *sd['to_img.weight'].shape[1:])
    w4 = new['to_img.weight'].view(3, 4, 4, *w2.shape[3:])
    for i in range(4):
        for j in range(4):
            si, sj = min(max((i + 0.5) / 2 - 0.5, 0), 1), min(max((j + 0.5) / 2 - 0.5, 0), 1)
            i0, j0 = int(si), int(sj)
            i1, j1 = min(i0 + 1, 1), min(j0 + 1, 1)
            fi, fj = si - i0, sj - j0
            expect = ((1 - fi) * (1 - fj) * w2[:, i0, j0] + (1 - fi) * fj * w2[:, i0, j1]
                      + fi * (1 - fj) * w2[:, i1, j0] + fi * fj * w2[:, i1, j1])
            assert torch.allclose(w4[:, i, j], expect, atol=1e-6)
    assert resize_to_img(sd, 2) is sd


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------
OPTIONS = REPO_ROOT / 'options'
TRAIN_OPTIONS = {'train_esc_x2.yml': ('ESC', 2), 'train_esc_x3.yml': ('ESC', 3), 'train_esc_x4.yml': ('ESC', 4),
                 'train_esc_light_x4.yml': ('ESC-light', 4), 'train_escfp_x4.yml': ('ESC-FP', 4)}


@pytest.mark.parametrize('name', list(TRAIN_OPTIONS) + [f'test_esc_x{s}.yml' for s in (2, 3, 4)])
def test_options_build_the_paper_networks(name):
    from basicsr.archs import build_network
    opt = load_yaml(OPTIONS / name)
    variant, scale = TRAIN_OPTIONS.get(name, ('ESC', int(name[-5])))
    assert opt['scale'] == scale
    net = build_network(dict(opt['network_g']))
    assert count_params(net) == OFFICIAL[f'{variant}_x{scale}']['num_params']
    if name.startswith('train'):
        train = opt['train']
        assert train['optim_g'] == {'type': 'AdamW', 'lr': 5e-4, 'weight_decay': 0, 'betas': [0.9, 0.9]}
        assert train['scheduler'] == {'type': 'MultiStepLR', 'milestones': [250000, 400000, 450000, 475000, 490000],
                                      'gamma': 0.5}
        assert (train['total_iter'], train['warmup_iter'], train['ema_decay']) == (500000, 20000, 0.999)
        assert opt['datasets']['train']['gt_size'] == 64 * scale
        assert opt['datasets']['train']['batch_size_per_gpu'] == 16
        assert opt['model_type'] == 'SwinIRModel'  # SRModel + the official window padding at test time
        if scale > 2:
            assert opt['path']['param_key_g'] == 'params_ema' and 'x2' in opt['path']['pretrain_network_g'].lower()
    else:
        assert opt['path']['param_key_g'] == 'params_ema' and opt['path']['strict_load_g'] is True
        names = [d['name'] for d in opt['datasets'].values()]
        assert names == ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']


def test_train_esc_x4_options_smoke_train(tmp_path):
    """The recipe trains through tools/train.py for a few iterations on CPU (tiny data)."""
    data = write_sr_pairs(tmp_path / 'data', 4, n=2, size=(96, 80))  # LR 24 x 20: padded to one 32 x 32 window
    opt = shrink_sr_options(load_yaml(OPTIONS / 'train_esc_x4.yml'), data, 4, iters=2, gt_size=32, name='esc_smoke')
    opt['network_g'].update(n_blocks=1, conv_blocks=2)  # the same layers, fewer of them (CPU time)
    path = dump_yaml(opt, tmp_path / 'esc_x4.yml')
    proc = run_tool('train', ['-opt', str(path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpts = list(tmp_path.rglob('net_g_2.pth'))
    assert ckpts, 'no checkpoint written'
    state = torch.load(ckpts[0], map_location='cpu')
    assert {'params', 'params_ema'} <= set(state)
    model = ESC(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    model.load_state_dict(state['params_ema'], strict=True)
