"""ImageRestorationModel: Restormer's progressive patch schedule, gradient clipping, cyclic cosine
scheduler through the model, and test-time padding."""
import copy

import pytest
import torch
from torch import nn

from agile_ir_plugin.basicsr.models.image_restoration_model import (ImageRestorationModel, progressive_patch,
                                                                    progressive_stage)
from agile_ir_plugin.basicsr.models.lr_scheduler import CosineAnnealingRestartCyclicLR

RESTORMER_SCHEDULE = dict(iters=[92000, 64000, 48000, 36000, 36000, 24000], mini_batch_sizes=[8, 5, 4, 2, 1, 1],
                          gt_sizes=[128, 160, 192, 256, 320, 384])


@pytest.mark.parametrize('it, batch, size', [
    (1, 8, 128), (92000, 8, 128),        # stage 0 ends at 92k (inclusive, as in Restormer's train.py)
    (92001, 5, 160), (156000, 5, 160),   # 92k + 64k
    (156001, 4, 192), (204000, 4, 192),
    (204001, 2, 256), (240000, 2, 256),
    (240001, 1, 320), (276000, 1, 320),
    (276001, 1, 384), (300000, 1, 384),
    (350000, 1, 384),                    # past the schedule: the last stage holds
])
def test_restormer_progressive_schedule(it, batch, size):
    assert progressive_patch(it, **RESTORMER_SCHEDULE) == (batch, size)


def test_progressive_stage_brute_force():
    iters = [3, 1, 4, 2]
    owner = [j for j, n in enumerate(iters) for _ in range(n)]  # stage of iterations 1..10
    for it in range(1, sum(iters) + 1):
        assert progressive_stage(it, iters) == owner[it - 1]


# ------------------------------------------------------------------------------ tiny model
class TinyNet(nn.Module):
    """3x3 conv + residual; records the input shapes it sees."""

    def __init__(self, channels=3, out_channels=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return self.conv(x) + x.mean(1, keepdim=True)


def _register_tiny():
    from basicsr.utils.registry import ARCH_REGISTRY
    if 'TinyNetForPipelineTests' not in ARCH_REGISTRY:
        ARCH_REGISTRY._do_register('TinyNetForPipelineTests', TinyNet)


def model_options(is_train=True, progressive=None, grad_clip=None, window_size=0, optim='AdamW', lr=1e-3,
                  scheduler=None):
    _register_tiny()
    train_ds = {'name': 'train', 'type': 'PairedImageDataset', 'batch_size_per_gpu': 4, 'gt_size': 32}
    if progressive:
        train_ds.update(progressive)
    opt = {
        'name': 'unit', 'model_type': 'ImageRestorationModel', 'scale': 1, 'num_gpu': 0, 'is_train': is_train,
        'dist': False, 'rank': 0, 'world_size': 1,
        'datasets': {'train': train_ds},
        'network_g': {'type': 'TinyNetForPipelineTests'},
        'path': {'pretrain_network_g': None, 'strict_load_g': True},
        'train': {'optim_g': {'type': optim, 'lr': lr},
                  'scheduler': scheduler or {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [2, 4],
                                             'restart_weights': [1, 1], 'eta_mins': [lr, 1e-6]},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'val': {'window_size': window_size},
    }
    if grad_clip is not None:
        opt['train'].update(use_grad_clip=True, grad_clip_norm=grad_clip)
    return opt


def test_progressive_crop_trims_batch_and_crops_aligned_window():
    torch.manual_seed(0)
    schedule = {'mini_batch_sizes': [4, 2], 'iters': [1, 5], 'gt_sizes': [32, 16]}
    model = ImageRestorationModel(model_options(progressive=schedule))
    lq = torch.rand(4, 3, 32, 32)
    gt = lq * 2 + 1  # aligned pairs: gt crop must equal 2 * lq crop + 1
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(1)  # stage 0: full batch, full patch
    assert model.lq.shape == (4, 3, 32, 32) and model.output.shape == (4, 3, 32, 32)
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(2)  # stage 1: 2 samples of 16x16
    assert model.lq.shape == (2, 3, 16, 16) and model.gt.shape == (2, 3, 16, 16)
    assert model.output.shape == (2, 3, 16, 16)
    assert torch.equal(model.gt, model.lq * 2 + 1)
    # every kept sample is a 16x16 window of a distinct original sample, the same window for all
    found = set()
    for i in range(2):
        hits = [(b, y, x) for b in range(4) for y in range(17) for x in range(17)
                if torch.equal(lq[b, :, y:y + 16, x:x + 16], model.lq[i])]
        assert len(hits) == 1
        found.add(hits[0])
    assert len({b for b, _, _ in found}) == 2 and len({(y, x) for _, y, x in found}) == 1


def test_progressive_options_are_checked():
    bad = {'mini_batch_sizes': [8, 4], 'iters': [1, 1], 'gt_sizes': [16, 32]}
    with pytest.raises(ValueError, match='exceed batch_size_per_gpu'):
        ImageRestorationModel(model_options(progressive=bad))
    with pytest.raises(ValueError, match='one entry per stage'):
        ImageRestorationModel(model_options(progressive={'mini_batch_sizes': [4], 'iters': [1, 1], 'gt_sizes': [16]}))
    with pytest.raises(ValueError, match='exceed the loaded patch gt_size'):
        ImageRestorationModel(model_options(progressive={'mini_batch_sizes': [4], 'iters': [1], 'gt_sizes': [64]}))


def _reference_step(net, lq, gt, lr, max_norm=None):
    """One SGD step by hand: L1 loss, optional global-norm clipping g * max_norm / ||g||."""
    net = copy.deepcopy(net)
    loss = (net(lq) - gt).abs().mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    scale = min(1.0, max_norm / (norm.item() + 1e-6)) if max_norm is not None else 1.0
    return [p.detach() - lr * scale * g for p, g in zip(net.parameters(), grads)], norm.item()


@pytest.mark.parametrize('clip', [None, 1e-3])
def test_grad_clipping_matches_manual_step(clip):
    torch.manual_seed(0)
    model = ImageRestorationModel(model_options(grad_clip=clip, optim='SGD', lr=0.5))
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    expected, norm = _reference_step(model.net_g, lq, gt, lr=0.5, max_norm=clip)
    assert norm > 1e-2  # the clip is active for 1e-3
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(1)
    for p, e in zip(model.net_g.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings('ignore:Detected call of `lr_scheduler.step')
def test_model_uses_cyclic_scheduler_and_basicsr_ones():
    model = ImageRestorationModel(model_options(lr=1e-3))
    assert isinstance(model.schedulers[0], CosineAnnealingRestartCyclicLR)
    lrs = []
    for it in range(1, 8):  # BasicSR's update_learning_rate: iteration i runs at scheduler step i - 1
        model.update_learning_rate(it)
        lrs.append(model.get_current_learning_rate()[0])
    assert lrs[:3] == pytest.approx([1e-3] * 3)  # first cycle: eta_min = base lr
    assert lrs[3] < 1e-3 and lrs[6] == pytest.approx(1e-6)
    basic = ImageRestorationModel(model_options(scheduler={'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5}))
    from basicsr.models.lr_scheduler import MultiStepRestartLR
    assert isinstance(basic.schedulers[0], MultiStepRestartLR)


@pytest.mark.parametrize('window, size', [(8, (13, 10)), (8, (16, 24)), (0, (13, 10))])
def test_test_time_padding(window, size):
    torch.manual_seed(0)
    model = ImageRestorationModel(model_options(is_train=False, window_size=window))
    lq = torch.rand(1, 3, *size)
    model.feed_data({'lq': lq})
    model.net_g.seen.clear()
    model.test()
    h, w = size
    padded = model.net_g.seen[-1][-2:]
    if window:
        assert padded == (-(-h // window) * window, -(-w // window) * window)
        reference = torch.nn.functional.pad(lq, (0, padded[1] - w, 0, padded[0] - h), mode='reflect')
    else:
        assert padded == size
        reference = lq
    with torch.no_grad():
        expected = model.net_g(reference)[..., :h, :w]
    assert model.output.shape == (1, 3, h, w) and torch.equal(model.lq, lq)
    torch.testing.assert_close(model.output, expected)
