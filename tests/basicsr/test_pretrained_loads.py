"""Pretrained weights in training: resized to another scale only when the options ask, else whole or an error.

Before: ``ESC.load_state_dict`` resized any x2 ``to_img`` to x4 by itself (an INFO line), so an x2
checkpoint gave x4 numbers in every loader that skipped the preflight (upstream BasicSR, a user's script)."""
import pytest
import torch
from basicsr.models.sr_model import SRModel

from agile_ir_plugin.archs import ESC
from agile_ir_plugin.archs.esc_arch import resize_to_img
from agile_ir_plugin.basicsr.pretrained import ExactPretrainedLoads
from agile_ir_plugin.checkpoint import CheckpointError

TINY = dict(dim=8, pdim=4, kernel_size=5, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2)


class Model(ExactPretrainedLoads, SRModel):
    pass


def _opt(path, **train):
    net = dict(type='ESC', upscaling_factor=4, **TINY)
    return {'num_gpu': 0, 'is_train': False, 'dist': False, 'network_g': net, 'train': train,
            'path': {'pretrain_network_g': str(path), 'param_key_g': 'params', 'strict_load_g': True}}


@pytest.fixture
def x2_checkpoint(tmp_path):
    torch.manual_seed(0)
    sd = ESC(upscaling_factor=2, **TINY).state_dict()
    path = tmp_path / 'esc_x2.pth'
    torch.save({'params': sd}, path)
    return path, sd


def test_plain_load_of_another_scale_is_an_error(x2_checkpoint):
    _, sd = x2_checkpoint
    with pytest.raises(RuntimeError, match='size mismatch for to_img.weight'):
        ESC(upscaling_factor=4, **TINY).load_state_dict(sd)


def test_training_model_resizes_only_when_asked(x2_checkpoint):
    path, sd = x2_checkpoint
    with pytest.raises(CheckpointError, match=r'to_img\.weight'):
        Model(_opt(path))
    model = Model(_opt(path, resize_pretrain_g=True))
    expected = resize_to_img(sd, 4)
    got = model.net_g.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not torch.equal(got['to_img.weight'][:12], sd['to_img.weight'])  # really resized, not copied
