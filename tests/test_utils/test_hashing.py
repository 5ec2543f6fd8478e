"""Content hashes of checkpoints: computed once per file version and remembered."""
from __future__ import annotations

import hashlib
import os
import os.path as osp

import torch

from s2c.utils import hashing
from s2c.utils.hashing import checkpoint_sha256, short_hash, state_dict_sha256


def test_checkpoint_sha256_is_remembered(tmp_path, monkeypatch):
    path = tmp_path / 'model.pth'
    torch.save({'w': torch.arange(10.0)}, path)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint_sha256(str(path)) == expected
    side = str(path) + '.sha256'
    assert osp.isfile(side)
    # A fresh process (empty memo) trusts the side file while size+mtime match ...
    hashing._MEMO.clear()
    text = open(side).read().replace(expected, 'f' * 64)
    open(side, 'w').write(text)
    assert checkpoint_sha256(str(path)) == 'f' * 64
    # ... and hashes again once the file changes.
    hashing._MEMO.clear()
    path.write_bytes(path.read_bytes() + b'x')
    assert checkpoint_sha256(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_sha256_falls_back_to_user_cache(tmp_path, monkeypatch):
    path = tmp_path / 'ro' / 'model.pth'
    path.parent.mkdir()
    path.write_bytes(b'abc')
    real_write = hashing._write_record
    # Simulate a read-only checkpoint folder (root ignores chmod).
    monkeypatch.setattr(hashing, '_write_record',
                        lambda p, rec: False if p.endswith('.sha256') else real_write(p, rec))
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    hashing._MEMO.clear()
    assert checkpoint_sha256(str(path)) == hashlib.sha256(b'abc').hexdigest()
    assert not osp.exists(str(path) + '.sha256')
    cached = os.listdir(tmp_path / 'cache' / 's2c' / 'sha256')
    assert len(cached) == 1 and cached[0].endswith('.json')


def test_state_dict_digest_ignores_order_and_other_prefixes():
    a = {'image_encoder.x': torch.ones(2), 'image_encoder.y': torch.zeros(3),
         'mask_decoder.z': torch.ones(1)}
    b = {'mask_decoder.z': torch.zeros(1), 'image_encoder.y': torch.zeros(3),
         'image_encoder.x': torch.ones(2)}
    assert state_dict_sha256(a, 'image_encoder.') == state_dict_sha256(b, 'image_encoder.')
    assert state_dict_sha256(a) != state_dict_sha256(b)
    c = dict(a, **{'image_encoder.x': torch.ones(2, dtype=torch.float64)})
    assert state_dict_sha256(c, 'image_encoder.') != state_dict_sha256(a, 'image_encoder.')
    assert short_hash({'a': 1, 'b': (2, 3)}) == short_hash({'b': [2, 3], 'a': 1})
