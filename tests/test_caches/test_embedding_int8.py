"""int8 embedding caches: the quantisation bound, the record format and its exact sizes, the
format in the manifest (a float16 job never reuses an int8 folder and the reverse), CRC
checks, and the format-agnostic reader on a cache the real job wrote with the tiny SAM."""
from __future__ import annotations

import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from test_cache_jobs import flip_byte, make_cfg, make_dataset

from s2c.caches import (
    CacheMismatchError,
    EmbeddingStore,
    check_caches,
    run_embedding_job,
    write_synthetic_embedding_cache,
)
from s2c.caches.embedding_store import (
    FORMAT_VERSIONS,
    RECORD_PREFIX_BYTES,
    check_entry,
    dequantize,
    entry_dtype,
    entry_file_nbytes,
    load_entry,
    quantize_per_channel,
    read_entry_header,
    save_entry,
)
from s2c.caches.job_sam import RANDOM_INIT_SEED
from s2c.sam.build import build_sam
from s2c.sam.encoder import early_block_index, encode_images
from s2c.utils import ManifestMismatchError
from s2c.utils.image_io import read_rgb_image


def _bound_ok(x: np.ndarray, back: np.ndarray, scale: np.ndarray, axis: int) -> None:
    """``|x - x'| <= scale / 2`` per channel (plus the float32 rounding of ``q * scale``)."""
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    s = scale.reshape(shape).astype(np.float64)
    err = np.abs(x.astype(np.float64) - back.astype(np.float64))
    assert (err <= s / 2 * (1 + 1e-6) + np.abs(x) * 2 ** -23).all()


@pytest.fixture
def dataset(tmp_path):
    root = str(tmp_path / 'VOC2012')
    return root, make_dataset(root, 4)


def test_quantisation_is_symmetric_per_channel_within_half_a_step():
    rng = np.random.default_rng(0)
    # channels of very different magnitudes, one all-zero channel
    x = rng.standard_normal((6, 5, 7)).astype(np.float32) * \
        np.array([1e-3, 1, 30, 0, 7, 1e4], np.float32)[:, None, None]
    q, scale = quantize_per_channel(x, 0)
    assert q.dtype == np.int8 and q.shape == x.shape and scale.dtype == np.float32
    assert scale.shape == (6,)
    np.testing.assert_array_equal(scale, (np.abs(x).max(axis=(1, 2)) / np.float32(127)))
    assert np.abs(q).max() == 127 and (q[3] == 0).all() and scale[3] == 0
    _bound_ok(x, dequantize(q, scale, 0), scale, 0)
    # the channel axis of early features is the last one
    e = np.moveaxis(x, 0, -1).copy()
    qe, se = quantize_per_channel(e, -1)
    np.testing.assert_array_equal(se, scale)
    np.testing.assert_array_equal(qe, np.moveaxis(q, 0, -1))
    _bound_ok(e, dequantize(qe, se, -1), se, -1)
    with pytest.raises(ValueError, match='non-finite'):
        quantize_per_channel(np.array([[np.nan]], np.float32), 0)


@pytest.mark.parametrize('dtype', ['float16', 'int8'])
def test_record_round_trip_of_both_formats(tmp_path, dtype):
    rng = np.random.default_rng(1)
    emb = (rng.standard_normal((256, 4, 4)) * rng.uniform(0.01, 50, (256, 1, 1))
           ).astype(np.float32)
    early = rng.standard_normal((4, 4, 8)).astype(np.float32) * 3
    path = str(tmp_path / 'a.npy')
    size = save_entry(path, emb, (30, 64), (60, 128), early, dtype=dtype)
    rec_dtype = entry_dtype((256, 4, 4), (4, 4, 8), dtype)
    shape, file_dtype, offset = read_entry_header(path)
    assert shape == (1,) and file_dtype == rec_dtype and offset % 64 == 0
    assert size == os.path.getsize(path) == offset + rec_dtype.itemsize \
        == entry_file_nbytes((256, 4, 4), (4, 4, 8), dtype)
    stored = np.float16 if dtype == 'float16' else np.int8
    assert rec_dtype.fields['embedding'][0].base == stored
    assert check_entry(path, rec_dtype) is None
    entry = load_entry(path)
    assert entry['dtype'] == dtype and entry['embedding'].dtype == stored
    assert entry['input_size'] == (30, 64) and entry['original_size'] == (60, 128)
    if dtype == 'int8':
        # prefix, then the float32 scales (4-byte aligned), then the int8 values
        assert rec_dtype.fields['embedding_scale'][1] == RECORD_PREFIX_BYTES
        assert rec_dtype.itemsize == RECORD_PREFIX_BYTES + 4 * (256 + 8) + 256 * 16 + 16 * 8
        _bound_ok(emb, dequantize(entry['embedding'], entry['embedding_scale'], 0),
                  entry['embedding_scale'], 0)
        _bound_ok(early, dequantize(entry['early'], entry['early_scale'], -1),
                  entry['early_scale'], -1)
        # plain numpy reads it too
        rec = np.load(path)
        np.testing.assert_array_equal(rec['embedding_scale'][0], np.abs(emb).max((1, 2)) / 127)
    else:
        assert entry['embedding_scale'] is None and entry['early_scale'] is None
        np.testing.assert_array_equal(entry['embedding'], emb.astype(np.float16))
    # a record of the other format is bad for this manifest
    other = 'int8' if dtype == 'float16' else 'float16'
    assert 'differs from the manifest' in check_entry(path, entry_dtype((256, 4, 4), (4, 4, 8),
                                                                        other))
    with pytest.raises(ValueError, match='sam_embeddings.dtype'):
        save_entry(path, emb, (1, 1), (1, 1), dtype='uint8')
    with pytest.raises(ValueError, match='non-finite'):
        emb[0, 0, 0] = np.nan
        save_entry(str(tmp_path / 'b.npy'), emb, (1, 1), (1, 1), dtype=dtype)
    assert not osp.exists(tmp_path / 'b.npy')


def test_exact_file_sizes_of_the_standard_models_and_tiny(tmp_path):
    """Bytes per image on disk (the figures of the module docstring): int8 is ~half."""
    sizes = {  # (embedding, early) -> (float16, int8)
        ((256, 64, 64), None): (2_097_432, 1_049_944),
        ((256, 64, 64), (64, 64, 1280)): (12_583_192, 6_298_008),
        ((256, 64, 64), (64, 64, 768)): (8_388_888, 4_198_808),
        ((256, 16, 16), None): (131_352, 66_904),
        ((256, 16, 16), (16, 16, 64)): (164_120, 83_544),
    }
    for (emb_shape, early_shape), expected in sizes.items():
        got = tuple(entry_file_nbytes(emb_shape, early_shape, d) for d in ('float16', 'int8'))
        assert got == expected, (emb_shape, early_shape)
    for dtype, want in zip(('float16', 'int8'), sizes[((256, 64, 64), None)]):
        path = str(tmp_path / f'{dtype}.npy')
        assert save_entry(path, np.ones((256, 64, 64), np.float32), (1, 1), (1, 1),
                          dtype=dtype) == want == os.path.getsize(path)
    # VOC train_aug and COCO train2014 with ViT-H: 20.7 -> 10.3 GiB, 160.3 -> 80.3 GiB
    f16, i8 = sizes[((256, 64, 64), None)]
    assert (round(10_582 * f16 / 2 ** 30, 1), round(10_582 * i8 / 2 ** 30, 1)) == (20.7, 10.3)
    assert (round(82_081 * f16 / 2 ** 30, 1), round(82_081 * i8 / 2 ** 30, 1)) == (160.3, 80.3)


def test_crc_detects_corruption_of_int8_values_and_scales(tmp_path):
    rng = np.random.default_rng(2)
    for target, from_end in (('values', 100), ('scales', None)):
        path = str(tmp_path / f'{target}.npy')
        save_entry(path, rng.standard_normal((256, 16, 16)), (5, 5), (5, 5), dtype='int8')
        if from_end is None:  # inside embedding_scale, right after the 24-byte prefix
            _, _, offset = read_entry_header(path)
            from_end = os.path.getsize(path) - (offset + RECORD_PREFIX_BYTES + 40)
        flip_byte(path, from_end)
        assert check_entry(path, full=False) is None  # header and size still fine
        assert check_entry(path).startswith('crc mismatch')


def test_int8_cache_of_the_real_job_reads_as_float32(dataset, tmp_path):
    """The job with sam_embeddings.dtype='int8' and the tiny SAM: the manifest says so, the
    files have the exact int8 size, the reader returns float32 within half a quantisation
    step of the encoder's output, get() and get_batch() agree exactly, --verify passes."""
    root, names = dataset
    cfg = make_cfg(root, early=True)
    cfg.sam_embeddings.dtype = 'int8'
    out = str(tmp_path / 'emb_int8')
    assert run_embedding_job(cfg, out=out, batch_size=2, progress=False).ok
    man = json.load(open(osp.join(out, 'manifest.json')))
    assert man['format_version'] == FORMAT_VERSIONS['int8'] == 2
    assert man['key']['dtype'] == 'int8'
    assert man['key']['quantization'] == 'symmetric_per_channel_absmax'
    for name in names:
        assert os.path.getsize(osp.join(out, name + '.npy')) == 83_544
    store = EmbeddingStore(out)
    assert store.storage_dtype == 'int8' and store.has_early
    sam = build_sam('tiny', None, device='cpu', seed=RANDOM_INIT_SEED)
    idx = early_block_index(sam, 'tiny')
    batch = store.get_batch(names, 'cpu')
    assert batch.embeddings.dtype == torch.float32 and batch.early.dtype == torch.float32
    assert tuple(batch.embeddings.shape) == (4, 256, 16, 16)
    assert tuple(batch.early.shape) == (4, 16, 16, 64)
    for i, name in enumerate(names):
        img = read_rgb_image(osp.join(root, 'JPEGImages', name + '.jpg'))
        ref = encode_images(sam, [img], early_block=idx)
        raw = store.get_raw(name)
        assert raw['embedding'].dtype == np.int8 and raw['embedding_scale'].shape == (256,)
        _bound_ok(ref.embeddings[0].numpy(), batch.embeddings[i].numpy(),
                  raw['embedding_scale'], 0)
        _bound_ok(ref.early[0].numpy(), batch.early[i].numpy(), raw['early_scale'], -1)
        got = store.get(name)
        assert got['embedding'].dtype == np.float32 and set(got) == {
            'embedding', 'early', 'input_size', 'original_size'}
        np.testing.assert_array_equal(got['embedding'], batch.embeddings[i].numpy())
        np.testing.assert_array_equal(got['early'], batch.early[i].numpy())
        assert list(got['input_size']) == batch.input_sizes[i].tolist()
    assert store.get_batch(names[:1], 'cpu', with_early=False).early is None
    assert store.get_batch([], 'cpu').embeddings.shape == (0, 256, 16, 16)
    assert run_embedding_job(cfg, out=out, verify=True, progress=False).ok
    # a float16 cache of the same images reads as the same shapes and dtypes
    f16 = str(tmp_path / 'emb_f16')
    assert run_embedding_job(make_cfg(root, early=True), out=f16, progress=False).ok
    b16 = EmbeddingStore(f16).get_batch(names, 'cpu')
    for a, b in ((batch.embeddings, b16.embeddings), (batch.early, b16.early)):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(batch.input_sizes, b16.input_sizes)


def test_float16_and_int8_caches_never_mix(dataset, tmp_path):
    """A job of one storage dtype refuses a folder of the other (naming the dtype), and
    --overwrite replaces it; an unknown dtype is a config error; training's pre-flight
    check refuses a cache whose dtype differs from the config's."""
    root, names = dataset
    f16_cfg, i8_cfg = make_cfg(root), make_cfg(root)
    i8_cfg.sam_embeddings.dtype = 'int8'
    out = str(tmp_path / 'emb')
    assert run_embedding_job(f16_cfg, out=out, names=names[:2], progress=False).ok
    with pytest.raises(ManifestMismatchError, match=r"(?s)format_version.*key\.dtype: folder "
                                                    r"has 'float16', this run has 'int8'"):
        run_embedding_job(i8_cfg, out=out, progress=False)
    out8 = str(tmp_path / 'emb8')
    assert run_embedding_job(i8_cfg, out=out8, names=names[:2], progress=False).ok
    with pytest.raises(ManifestMismatchError, match="key.dtype: folder has 'int8'"):
        run_embedding_job(f16_cfg, out=out8, progress=False)
    assert len(os.listdir(out8)) == 4  # manifest, lock, 2 entries: nothing was replaced
    replaced = run_embedding_job(f16_cfg, out=out8, overwrite=True, progress=False)
    assert replaced.ok and sorted(replaced.done) == sorted(names)
    assert EmbeddingStore(out8).storage_dtype == 'float16'
    assert os.path.getsize(osp.join(out8, names[0] + '.npy')) == 131_352
    bad = make_cfg(root)
    bad.sam_embeddings.dtype = 'bfloat16'
    with pytest.raises(ValueError, match=r"sam_embeddings.dtype must be one of \['float16', "
                                         r"'int8'\], got 'bfloat16'"):
        run_embedding_job(bad, out=str(tmp_path / 'x'), progress=False)
    # the store refuses a manifest whose version does not fit its dtype
    man_path = osp.join(out, 'manifest.json')
    man = json.load(open(man_path))
    man['format_version'] = 2
    json.dump(man, open(man_path, 'w'))
    with pytest.raises(ValueError, match=r"format version 2 with dtype 'float16'.*--overwrite"):
        EmbeddingStore(out)
    # pre-flight: CPM reads a float16 cache while the config asks for int8
    cfg = make_cfg(root)
    cfg.train_dataloader.dataset.ann_file = 'ImageSets/Segmentation/train.txt'
    cfg.model = dict(cpm=dict(embedding_dir=out8))
    check_caches(cfg)  # float16 == float16
    cfg.sam_embeddings.dtype = 'int8'
    with pytest.raises(CacheMismatchError, match=r"(?s)dtype 'float16' \(config: 'int8'\).*"
                                                 r'cache_sam_embeddings.py .* --overwrite'):
        check_caches(cfg)


def test_synthetic_int8_cache(tmp_path):
    out = str(tmp_path / 'syn')
    write_synthetic_embedding_cache(out, ['a', 'b'], 'tiny', (30, 40), dtype='int8')
    store = EmbeddingStore(out)
    assert store.storage_dtype == 'int8' and store.names() == ['a', 'b']
    feats = store.get_batch(['b', 'a'], 'cpu')
    assert feats.embeddings.dtype == torch.float32 and torch.isfinite(feats.embeddings).all()
    assert feats.input_sizes.tolist() == [[192, 256]] * 2
