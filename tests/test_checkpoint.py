"""Safe checkpoint loading: weights_only by default, one clear line per failure."""
import collections

import numpy as np
import pytest
import torch

from agile_ir_plugin.checkpoint import CheckpointError, load_checkpoint


def test_plain_checkpoint_loads(tmp_path):
    path = tmp_path / 'ok.pth'
    torch.save({'params': {'w': torch.ones(2)}, 'iter': 3, 'm': collections.Counter([1, 1])}, path)
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt['params']['w'], torch.ones(2)) and ckpt['m'][1] == 2


def test_legacy_pickle_is_refused_with_the_switch_named(tmp_path, monkeypatch):
    path = tmp_path / 'legacy.pth'
    torch.save({'params': {'w': torch.ones(2)}, 'extra': np.arange(3)}, path)  # numpy objects need pickle
    monkeypatch.delenv('AGILE_IR_ALLOW_PICKLE', raising=False)
    with pytest.raises(CheckpointError, match='legacy pickle.*AGILE_IR_ALLOW_PICKLE=1'):
        load_checkpoint(path)
    assert load_checkpoint(path, allow_pickle=True)['extra'].tolist() == [0, 1, 2]
    monkeypatch.setenv('AGILE_IR_ALLOW_PICKLE', '1')
    assert load_checkpoint(path)['extra'].tolist() == [0, 1, 2]


@pytest.mark.parametrize('content', [b'', b'garbage bytes', None])
def test_missing_truncated_or_garbage_files(tmp_path, content):
    path = tmp_path / 'x.pth'
    if content is None:
        torch.save({'w': torch.randn(100)}, path)
        path.write_bytes(path.read_bytes()[:200])  # truncated zip
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.pth')
