"""Safe checkpoint loading (weights_only, one clear line per failure) and the one converter between
BasicSR, official, MMagic/mmengine and bare layouts (whole loads or an error)."""
import collections
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from agile_ir_plugin.checkpoint import (CheckpointError, convert_checkpoint, extract_state_dict, load_checkpoint,
                                        load_state_dict_exact, read_state_dict)


def test_plain_checkpoint_loads(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save({'params': {'w': torch.ones(2)}, 'iter': 3, 'm': collections.Counter([1, 1])}, path)
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt['params']['w'], torch.ones(2)) and ckpt['m'][1] == 2


def _assert_one_clean_sentence(msg):
    assert '\x1b' not in msg and '[1m' not in msg and '\n' not in msg, msg
    assert msg.endswith('.'), msg  # not cut mid-sentence


def test_legacy_pickle_is_refused_with_the_switch_named(tmp_path, monkeypatch):
    path = tmp_path / 'legacy.pth'
    torch.save({'params': {'w': torch.ones(2)}, 'extra': np.arange(3)}, path)  # numpy objects need pickle
    monkeypatch.delenv('AGILE_IR_ALLOW_PICKLE', raising=False)
    with pytest.raises(CheckpointError, match='legacy pickle.*AGILE_IR_ALLOW_PICKLE=1') as exc:
        load_checkpoint(path)
    _assert_one_clean_sentence(str(exc.value))
    assert 'numpy' in str(exc.value)  # names what it stores
    assert load_checkpoint(path, allow_pickle=True)['extra'].tolist() == [0, 1, 2]
    monkeypatch.setenv('AGILE_IR_ALLOW_PICKLE', '1')
    assert load_checkpoint(path)['extra'].tolist() == [0, 1, 2]


@pytest.mark.parametrize('kind', ['raw_pickle', 'torch_legacy_format'])
def test_non_zip_pickles_are_refused_as_pickles_not_called_corrupt(tmp_path, monkeypatch, kind):
    """Before: 'is truncated or corrupt' for a raw (non-zip) pickle."""
    monkeypatch.delenv('AGILE_IR_ALLOW_PICKLE', raising=False)
    path = tmp_path / 'raw.pth'
    obj = {'params': {'w': np.ones(3)}}
    if kind == 'raw_pickle':
        with open(path, 'wb') as f:
            pickle.dump(obj, f, protocol=4)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    assert 'pickle' in msg and 'refused' in msg and 'AGILE_IR_ALLOW_PICKLE=1' in msg and 'corrupt' not in msg, msg
    _assert_one_clean_sentence(msg)
    assert load_checkpoint(path, allow_pickle=True)['params']['w'].tolist() == [1, 1, 1]


def test_torch_legacy_format_of_plain_tensors_loads_and_a_cut_one_is_corrupt(tmp_path):
    path = tmp_path / 'old.pth'
    torch.save({'params': {'w': torch.arange(100.)}}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(path)['params']['w'], torch.arange(100.))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint(path)


@pytest.mark.parametrize('content', [b'', b'garbage bytes', None])
def test_missing_truncated_or_garbage_files(tmp_path, content):
    path = tmp_path / 'x.pth'
    if content is None:
        torch.save({'w': torch.randn(100)}, path)
        path.write_bytes(path.read_bytes()[:200])  # truncated zip
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match='truncated or corrupt') as exc:
        load_checkpoint(path)
    _assert_one_clean_sentence(str(exc.value))
    if content is None:  # torch's own words, whole: "... failed finding central directory"
        assert 'central directory).' in str(exc.value), str(exc.value)
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.pth')


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self, scale=2):
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3)
        self.tail = nn.Conv2d(4, 3 * scale * scale, 1)


def _sd(seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) for k, v in Tiny().state_dict().items()}


A, B = _sd(0), _sd(1)


def _same(sd, ref):
    return sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)


LAYOUTS = {  # name: (checkpoint, {param_key: expected weights})
    'basicsr': ({'params': A, 'params_ema': B}, {None: A, 'params': A, 'params_ema': B, 'generator_ema': B}),
    'basicsr_ema_only': ({'params_ema': B}, {None: B, 'params_ema': B}),
    'basicsr_ddp': ({'params': {'module.' + k: v for k, v in A.items()}}, {None: A, 'params': A}),
    'official_state_dict': ({'state_dict': {'module.' + k: v for k, v in A.items()}, 'epoch': 3}, {None: A}),
    'mmagic': ({'meta': {'epoch': 1}, 'state_dict': {**{'generator.' + k: v for k, v in A.items()},
                                                     **{'generator_ema.' + k: v for k, v in B.items()}},
                'optimizer': {}}, {None: A, 'generator': A, 'params': A, 'generator_ema': B, 'params_ema': B}),
    'mmagic_ema_wrapper': ({'state_dict': {**{'generator.' + k: v for k, v in A.items()},
                                           **{'generator_ema.module.' + k: v for k, v in B.items()},
                                           'generator_ema.steps': torch.tensor(5)}},
                           {None: A, 'params_ema': B}),
    'mmengine_ema_hook': ({'state_dict': {'generator.' + k: v for k, v in A.items()},
                           'ema_state_dict': {'steps': torch.tensor(3), **{'module.generator.' + k: v
                                                                         for k, v in B.items()}}},
                          {None: A, 'params': A}),
    'bare': (dict(A), {None: A}),
}


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_extract_state_dict_reads_every_layout(layout):
    ckpt, expected = LAYOUTS[layout]
    for key, ref in expected.items():
        sd, used = extract_state_dict(ckpt, key, 'x.pth')
        assert _same(sd, ref), (layout, key)
        model = Tiny()
        load_state_dict_exact(model, sd, 'x.pth', used)
        assert _same(model.state_dict(), ref)


def test_an_explicit_key_that_is_absent_is_an_error_never_a_fallback():
    with pytest.raises(CheckpointError) as exc:
        extract_state_dict({'params': A}, 'params_ema', 'ckpt.pth')
    assert str(exc.value) == "ckpt.pth has no 'params_ema' weights; it holds: params. Name one of those as the param key."
    with pytest.raises(CheckpointError, match="no 'params' weights; it holds: params_ema"):
        extract_state_dict({'params_ema': A}, 'params', 'ckpt.pth')
    with pytest.raises(CheckpointError, match="no 'params_ema' weights; it holds: a bare state dict"):
        extract_state_dict(dict(A), 'params_ema', 'ckpt.pth')
    with pytest.raises(CheckpointError, match="no 'generator_ema' weights; it holds: generator[.]"):
        extract_state_dict({'state_dict': {'generator.' + k: v for k, v in A.items()}}, 'generator_ema', 'mm.pth')
    with pytest.raises(CheckpointError, match="found no weights.*'epoch', 'optimizer'"):
        extract_state_dict({'epoch': 1, 'optimizer': {}}, None, 'ckpt.pth')
    with pytest.raises(CheckpointError, match='holds a list'):
        extract_state_dict([1], None, 'ckpt.pth')


def test_a_partial_load_is_an_error_naming_the_keys_and_the_scale():
    model = Tiny(scale=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = dict(A)  # a x2 checkpoint
    with pytest.raises(CheckpointError) as exc:
        load_state_dict_exact(model, sd, 'x2.pth', 'params', build=Tiny, scale=4)
    assert str(exc.value) == (
        "x2.pth [params] does not fit Tiny: shape mismatches 'tail.weight: (12, 4, 1, 1) in the checkpoint vs "
        "(48, 4, 1, 1)', 'tail.bias: (12,) in the checkpoint vs (48,)'. It is a x2 checkpoint and the network "
        "is x4: use a x4 checkpoint.")
    assert _same(model.state_dict(), before)  # nothing loaded
    del sd['body.bias']
    sd['extra.w'] = torch.ones(1)
    with pytest.raises(CheckpointError, match=r"missing keys 'body.bias'; unexpected keys 'extra.w'"):
        load_state_dict_exact(Tiny(), sd, 'x.pth')


def test_esc_x2_weights_in_an_x4_esc_are_refused_not_resized():
    """Before: ESC.load_state_dict resized to_img silently (INFO 'Resizing to_img from x2 to x4')."""
    from agile_ir_plugin.archs import ESC
    small = dict(dim=8, pdim=4, kernel_size=3, n_blocks=1, conv_blocks=1, window_size=4, num_heads=2)
    x2 = ESC(upscaling_factor=2, **small).state_dict()
    with pytest.raises(CheckpointError, match="It is a x2 checkpoint and the network is x4"):
        load_state_dict_exact(ESC(upscaling_factor=4, **small), x2, 'x2.pth',
                              build=lambda s: ESC(upscaling_factor=s, **small), scale=4)


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_convert_round_trips_between_basicsr_and_mmagic(tmp_path, layout):
    ckpt, expected = LAYOUTS[layout]
    src = tmp_path / 'src.pth'
    torch.save(ckpt, src)
    report = convert_checkpoint(src, tmp_path / 'mm.pth', to='mmagic')
    mm = torch.load(tmp_path / 'mm.pth', weights_only=True)
    assert set(mm) == {'meta', 'state_dict'} and all(k.startswith(('generator.', 'generator_ema.'))
                                                     for k in mm['state_dict'])
    assert _same(read_state_dict(tmp_path / 'mm.pth')[0], read_state_dict(src)[0])
    convert_checkpoint(tmp_path / 'mm.pth', tmp_path / 'back.pth', to='basicsr')
    back = torch.load(tmp_path / 'back.pth', weights_only=True)
    sets = {'params': A, 'params_ema': B}
    for name in back:
        assert _same(back[name], extract_state_dict(ckpt, name if name in LAYOUTS[layout][1] else None)[0])
    assert set(report['sets']) <= {'generator', 'generator_ema'} and report['tensors'] == 4 * len(back)
    assert set(back) <= set(sets)


def test_convert_one_named_set_and_refuse_bad_requests(tmp_path):
    src = tmp_path / 'src.pth'
    torch.save({'params': A, 'params_ema': B}, src)
    report = convert_checkpoint(src, tmp_path / 'ema.pth', to='basicsr', param_key='params_ema')
    assert report == {'sets': {'params': 'params_ema'}, 'tensors': 4}
    assert _same(torch.load(tmp_path / 'ema.pth', weights_only=True)['params'], B)
    with pytest.raises(CheckpointError, match="must be 'basicsr' or 'mmagic'"):
        convert_checkpoint(src, tmp_path / 'o.pth', to='onnx')
    with pytest.raises(CheckpointError, match='is the input file'):
        convert_checkpoint(src, src)
    torch.save({'params': A}, src)
    with pytest.raises(CheckpointError, match="no 'params_ema' weights"):
        convert_checkpoint(src, tmp_path / 'x.pth', param_key='params_ema')
    assert not (tmp_path / 'x.pth').exists() and not (tmp_path / 'o.pth').exists()
