"""bf16 / fp16 autocast inference of every arch in ``agile_ir_plugin.archs.ARCHS`` on a real image
(Set5 baby, LR x4, a 16x16 crop): every intermediate half-precision tensor and the output are
finite, and the output is close to fp32.

Tolerance (relative L2 error of the output vs fp32, small random-init configs, CPU autocast):
bf16 <= 2e-2, fp16 <= 3e-3 (measured at most 3.8e-3 and 5.5e-4 on 2026-11-21: ~5x margin).
The audit also records in which dtype softmax / normalisation ops ran and the largest half
activation (fp16 overflows at 65504); ``pytest -s`` prints it (see docs/reliability.md)."""
import cv2
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from agile_ir_plugin.archs import ARCHS

SMALL = {
    'ESC': dict(dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                upscaling_factor=4),
    'ESCFP': dict(dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2,
                  upscaling_factor=4),
    'AgileIR': dict(upscale=4, img_size=16, window_size=8, depths=(2,), embed_dim=16, num_heads=(2,),
                    drop_path_rate=0.0),
    'Restormer': dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 2, 2)),
    'MSTPlusPlus': dict(n_feat=31, stage=1),
}
TOL = {torch.bfloat16: 2e-2, torch.float16: 3e-3}
# allocations (uninitialised) and mask constructors (-inf by design) are not computed values
NOT_COMPUTED = ('empty', 'new_empty', 'masked_fill', 'fill', 'full', 'zeros', 'ones', 'new_full')
WATCH = ('softmax', 'layer_norm', 'group_norm', 'batch_norm', 'norm', 'var', 'scaled_dot_product', 'flash')


class HalfAudit(TorchDispatchMode):
    """Records every op's output dtype; flags non-finite half outputs; tracks the largest one."""

    def __init__(self):
        super().__init__()
        self.nonfinite, self.max_abs, self.watched = [], 0.0, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__
        if name.split('.')[0].rstrip('_') in NOT_COMPUTED:
            return out
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16) and t.numel():
                if not torch.isfinite(t).all():
                    self.nonfinite.append(name)
                self.max_abs = max(self.max_abs, float(t.float().abs().max()))
        if any(w in name for w in WATCH):
            dtypes = {str(t.dtype).replace('torch.', '') for t in args if isinstance(t, torch.Tensor)}
            self.watched.setdefault(name.split('.')[0], set()).update(dtypes)
        return out


@pytest.fixture(scope='module')
def lr_crop(shared_data):
    img = cv2.imread(str(shared_data / 'benchmark' / 'Set5' / 'LR_bicubic' / 'X4' / 'babyx4.png'))
    assert img is not None
    crop = img[48:64, 48:64, ::-1].astype(np.float32) / 255
    return torch.from_numpy(crop.copy()).permute(2, 0, 1)[None]


def test_every_arch_has_a_small_config():
    assert set(ARCHS) <= set(SMALL), f'add a small config for {set(ARCHS) - set(SMALL)}'


@pytest.mark.parametrize('name', sorted(SMALL))
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_autocast_inference_is_finite_and_close_to_fp32(name, dtype, lr_crop):
    if name not in ARCHS:
        pytest.skip(f'{name} is not in agile_ir_plugin.archs')
    torch.manual_seed(0)
    net = ARCHS[name](**SMALL[name]).eval()
    with torch.no_grad():
        ref = net(lr_crop)
        audit = HalfAudit()
        with torch.autocast('cpu', dtype=dtype), audit:
            out = net(lr_crop)
    assert audit.max_abs > 0, 'autocast produced no half-precision tensor'
    assert not audit.nonfinite, f'non-finite half outputs of {sorted(set(audit.nonfinite))}'
    assert out.shape == ref.shape and torch.isfinite(out).all()
    rel = float((out.float() - ref).norm() / ref.norm())
    print(f'\n{name} {dtype}: rel L2 {rel:.2e}, max |half activation| {audit.max_abs:.3g}, '
          f'softmax/norm ops: {dict((k, sorted(v)) for k, v in sorted(audit.watched.items()))}')
    assert rel <= TOL[dtype], rel
