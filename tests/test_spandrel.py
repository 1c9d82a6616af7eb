"""spandrel 0.4.2 detects and loads every arch of the plugin after install(), with the right scale;
a Restormer+GLMHA checkpoint is never taken for a plain Restormer (before: taken for Restormer, then
`Unexpected key(s) ... attn.calibration.fc1.weight`; ESC, ESCFP, AgileIR, MST++: UnsupportedModelError)."""
import pytest
import torch

spandrel = pytest.importorskip('spandrel')

from agile_ir_plugin.archs import ESC, ESCFP, AgileIR, MSTPlusPlus, Restormer  # noqa: E402
from agile_ir_plugin.spandrel_support import ARCH_IDS, install  # noqa: E402

SMALL_RESTORMER = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 2, 4))
CASES = {
    # name: (model, expected arch id, scale, input channels, layout)
    'ESC_x2': (lambda: ESC(dim=16, pdim=8, n_blocks=2, conv_blocks=2, kernel_size=5, window_size=8, num_heads=2,
                           upscaling_factor=2), 'agile_ir.ESC', 2, 3, 'basicsr'),
    'ESC_x3_use_ln': (lambda: ESC(dim=16, pdim=8, n_blocks=1, conv_blocks=3, kernel_size=7, window_size=4, num_heads=4,
                                  upscaling_factor=3, exp_ratio=2.0, use_ln=True), 'agile_ir.ESC', 3, 3, 'official'),
    'ESC_light_x4': (lambda: ESC(dim=16, pdim=4, n_blocks=3, conv_blocks=1, kernel_size=5, window_size=8, num_heads=2,
                                 upscaling_factor=4), 'agile_ir.ESC', 4, 3, 'bare'),
    'ESCFP_x4': (lambda: ESCFP(dim=12, pdim=4, n_blocks=1, conv_blocks=2, kernel_size=5, window_size=8, num_heads=3,
                               upscaling_factor=4), 'agile_ir.ESCFP', 4, 3, 'mmagic'),
    'AgileIR_x3': (lambda: AgileIR(upscale=3, embed_dim=16, depths=(2, 1), num_heads=(2, 2), window_size=4,
                                   qk_dim=8, num_groups=2), 'agile_ir.AgileIR', 3, 3, 'basicsr'),
    'AgileIR_x2_defaults': (lambda: AgileIR(upscale=2), 'agile_ir.AgileIR', 2, 3, 'mmagic'),
    'RestormerGLMHA': (lambda: Restormer(attn='glmha', **SMALL_RESTORMER), 'agile_ir.RestormerGLMHA', 1, 3, 'basicsr'),
    'RestormerGLMHA_paper': (lambda: Restormer(attn='glmha', glmha_preset='paper', **SMALL_RESTORMER),
                             'agile_ir.RestormerGLMHA', 1, 3, 'official'),
    'MSTPlusPlus': (lambda: MSTPlusPlus(n_feat=31, stage=1), 'agile_ir.MSTPlusPlus', 1, 3, 'official'),
    'MSTPlusPlus_GLMHA': (lambda: MSTPlusPlus(n_feat=31, stage=1, attn='glmha'), 'agile_ir.MSTPlusPlus', 1, 3, 'basicsr'),
    'MSTPlusPlus_GLMHA_paper': (lambda: MSTPlusPlus(n_feat=31, stage=1, attn='glmha', glmha_preset='paper'),
                                'agile_ir.MSTPlusPlus', 1, 3, 'bare'),
}


def save(model, path, layout):
    sd = model.state_dict()
    ckpt = {'basicsr': lambda: {'params': sd, 'params_ema': sd},
            'official': lambda: {'state_dict': {'module.' + k: v for k, v in sd.items()}},
            'bare': lambda: sd,
            'mmagic': lambda: {'meta': {}, 'state_dict': {'generator.' + k: v for k, v in sd.items()}}}[layout]()
    torch.save(ckpt, path)
    return path


def randomized(make):
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture
def registry():
    reg = spandrel.MAIN_REGISTRY.copy()
    install(reg)
    return reg


@pytest.mark.parametrize('case', sorted(CASES))
def test_spandrel_detects_and_loads(case, tmp_path, registry):
    make, arch_id, scale, in_ch, layout = CASES[case]
    src = randomized(make)
    path = save(src, tmp_path / f'{case}.pth', layout)
    desc = spandrel.ModelLoader(registry=registry).load_from_file(str(path))
    assert desc.architecture.id == arch_id
    assert desc.scale == scale and desc.input_channels == in_ch
    loaded = desc.model.state_dict()
    assert loaded.keys() == src.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in src.state_dict().items())
    x = torch.rand(1, in_ch, 16, 16)
    with torch.no_grad():
        assert torch.allclose(desc.model(x), src(x), atol=1e-5)


def test_without_install_spandrel_does_not_load_ours(tmp_path):
    """The failure of the issue, and that our install is what changes it."""
    glmha = save(randomized(CASES['RestormerGLMHA'][0]), tmp_path / 'glmha.pth', 'basicsr')
    esc = save(randomized(CASES['ESC_x2'][0]), tmp_path / 'esc.pth', 'basicsr')
    plain = spandrel.MAIN_REGISTRY.copy()
    for arch_id in ARCH_IDS:
        assert arch_id not in plain or plain is spandrel.MAIN_REGISTRY
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader(registry=plain).load_from_file(str(esc))
    try:
        desc = spandrel.ModelLoader(registry=plain).load_from_file(str(glmha))
        taken_as = desc.architecture.id
    except Exception:  # noqa: BLE001  spandrel's Restormer-like arch refuses the GLMHA keys
        taken_as = None
    assert taken_as not in ARCH_IDS


def test_plain_restormer_is_not_taken_by_the_glmha_support(tmp_path, registry):
    path = save(randomized(lambda: Restormer(**SMALL_RESTORMER)), tmp_path / 'plain.pth', 'basicsr')
    try:
        desc = spandrel.ModelLoader(registry=registry).load_from_file(str(path))
        assert desc.architecture.id not in ARCH_IDS
    except spandrel.UnsupportedModelError:
        pass


def test_install_adds_to_main_registry_once():
    install()
    install()
    assert all(arch_id in spandrel.MAIN_REGISTRY for arch_id in ARCH_IDS)
    order = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection')]
    assert max(order.index(a) for a in ARCH_IDS) < min(i for i, a in enumerate(order) if a not in ARCH_IDS)
