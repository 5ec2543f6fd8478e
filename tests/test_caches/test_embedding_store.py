"""The embedding store: the record format, and which back-ends may read a cache."""
from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest
import torch

from s2c.caches import EmbeddingStore, write_synthetic_embedding_cache
from s2c.caches.embedding_store import (
    RECORD_PREFIX_BYTES,
    check_entry,
    entry_dtype,
    load_entry,
    read_entry_header,
    save_entry,
)
from s2c.registry import PROMPT_BACKENDS


def test_record_format_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((256, 4, 4)).astype(np.float32)
    early = rng.standard_normal((4, 4, 8)).astype(np.float32)
    path = str(tmp_path / 'a.npy')
    size = save_entry(path, emb, (30, 64), (60, 128), early)
    dtype = entry_dtype((256, 4, 4), (4, 4, 8))
    assert dtype.fields['embedding'][1] == RECORD_PREFIX_BYTES
    assert dtype.itemsize == RECORD_PREFIX_BYTES + 2 * (256 * 16 + 16 * 8)
    shape, file_dtype, offset = read_entry_header(path)
    assert shape == (1,) and file_dtype == dtype and size == offset + dtype.itemsize
    assert offset % 64 == 0
    entry = load_entry(path)
    assert isinstance(entry['embedding'], np.memmap) and entry['embedding'].dtype == np.float16
    np.testing.assert_array_equal(entry['embedding'], emb.astype(np.float16))
    np.testing.assert_array_equal(entry['early'], early.astype(np.float16))
    assert entry['input_size'] == (30, 64) and entry['original_size'] == (60, 128)
    # plain numpy reads it too
    rec = np.load(path)
    assert rec['original_size'][0].tolist() == [60, 128]
    assert check_entry(path, dtype) is None
    with pytest.raises(ValueError, match='non-finite'):
        save_entry(str(tmp_path / 'b.npy'), emb * 1e6, (1, 1), (1, 1))
    assert not osp.exists(tmp_path / 'b.npy')


def test_store_accepts_only_backends_with_its_encoder(tmp_path):
    """A cache records the encoder_id; a back-end of other weights (another seed, as another
    checkpoint would be) or without the early features it requires is refused, naming why."""
    out = str(tmp_path / 'emb')
    write_synthetic_embedding_cache(out, ['a', 'b'], 'tiny', (30, 40))
    store = EmbeddingStore(out)
    same = PROMPT_BACKENDS.build(dict(type='sam', model_type='tiny', checkpoint=None, seed=0,
                                      device='cpu'))
    store.check_backend(same)
    other = PROMPT_BACKENDS.build(dict(type='sam', model_type='tiny', checkpoint=None, seed=1,
                                       device='cpu'))
    with pytest.raises(ValueError, match='image encoder'):
        store.check_backend(other)
    same.requires = frozenset({'early'})
    with pytest.raises(ValueError, match='early ViT features'):
        store.check_backend(same)
    feats = store.get_batch(['b', 'a'], 'cpu')
    assert feats.input_sizes.tolist() == [[192, 256]] * 2 and feats.early is None
    with pytest.raises(FileNotFoundError, match='cache_sam_embeddings'):
        EmbeddingStore(str(tmp_path / 'nothing'))
    assert not osp.exists(tmp_path / 'nothing')
    assert torch.isfinite(feats.embeddings).all()


def test_cache_without_encoder_id_says_to_rebuild(tmp_path):
    out = str(tmp_path / 'emb')
    write_synthetic_embedding_cache(out, ['a'], 'tiny', (30, 40))
    man = osp.join(out, 'manifest.json')
    data = json.load(open(man))
    del data['key']['encoder_id']
    json.dump(data, open(man, 'w'))
    backend = PROMPT_BACKENDS.build(dict(type='sam', model_type='tiny', checkpoint=None,
                                         device='cpu'))
    with pytest.raises(ValueError, match='predates encoder_id.*--overwrite'):
        EmbeddingStore(out).check_backend(backend)
