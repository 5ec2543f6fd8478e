"""The SAM cache jobs: manifest refusal, resume after a crash, sharding, corrupt images,
--verify / --repair, the CLI exit statuses and both jobs end to end (tiny SAM)."""
from __future__ import annotations

import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from s2c.caches import EmbeddingStore, run_embedding_job, run_se_map_job
from s2c.caches.embedding_store import check_entry
from s2c.caches.job_sam import RANDOM_INIT_SEED
from s2c.sam.build import build_sam, encoder_id
from s2c.sam.encoder import early_block_index, encode_images
from s2c.utils import ManifestMismatchError, ManifestUnreadableError, claim_folder
from s2c.utils.dist import dist_rank_world, parse_shard, select_names, shard_names
from s2c.utils.image_io import read_rgb_image
from s2c.utils.manifest import make_manifest, manifest_differences
from s2c.utils.se_map_io import load_se_map, save_se_map

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Sizes (H, W) of the synthetic images; the SAM resize of the longest side to 256 px
# gives input_size (h, w) = round(H * 256 / max(H, W)), round(W * 256 / max(H, W)).
SIZES = [(40, 56), (48, 48), (64, 32), (30, 45), (50, 40), (36, 60), (44, 52)]
EXPECTED_INPUT = [(183, 256), (256, 256), (256, 128), (171, 256), (256, 205), (154, 256),
                  (217, 256)]



def truncate(path: str, keep: float | int) -> None:
    """Cut a file to a fraction of its bytes (``0 < keep < 1``) or drop ``-keep`` bytes."""
    data = open(path, 'rb').read()
    end = int(len(data) * keep) if 0 < keep < 1 else len(data) + int(keep)
    with open(path, 'wb') as f:
        f.write(data[:end])


def flip_byte(path: str, from_end: int = 1000) -> None:
    """Flip one bit of the byte ``from_end`` bytes before the end (inside the payload)."""
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) - from_end)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))


def make_dataset(root: str, n: int = len(SIZES)) -> list[str]:
    """Write ``n`` random JPEGs and ImageSets/Segmentation/train.txt under ``root``."""
    rng = np.random.default_rng(0)
    os.makedirs(osp.join(root, 'JPEGImages'), exist_ok=True)
    os.makedirs(osp.join(root, 'ImageSets', 'Segmentation'), exist_ok=True)
    names = [f'img_{i:02d}' for i in range(n)]
    for name, (h, w) in zip(names, SIZES * (n // len(SIZES) + 1)):
        # blocky image so that felzenszwalb finds a few segments
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = np.kron(small, np.ones((8, 8, 1), np.uint8))[:h, :w]
        Image.fromarray(img).save(osp.join(root, 'JPEGImages', name + '.jpg'), quality=95)
    with open(osp.join(root, 'ImageSets', 'Segmentation', 'train.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return names


def make_cfg(data_root: str, *, provider: dict | None = None, early: bool = False,
             ann_file: str = 'ImageSets/Segmentation/train.txt') -> Config:
    return Config(dict(
        sam=dict(model_type='tiny', checkpoint=None, device='cpu', autocast_dtype=None),
        se_maps=dict(provider=provider or dict(type='felzenszwalb', scale=50.0, sigma=0.5,
                                               min_size=20),
                     overlap='smallest_on_top'),
        sam_embeddings=dict(early_features=early),
        train_dataloader=dict(dataset=dict(type='VOC12ClsDataset', data_root=data_root,
                                           ann_file=ann_file, img_dir='JPEGImages',
                                           img_suffix='.jpg'))))


def entries(cache_dir: str, suffix: str) -> list[str]:
    return sorted(f[:-len(suffix)] for f in os.listdir(cache_dir)
                  if f.endswith(suffix) and not f.startswith('.'))


def tmp_files(cache_dir: str) -> list[str]:
    return [f for f in os.listdir(cache_dir) if f.startswith('.tmp-')]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dataset(tmp_path):
    root = str(tmp_path / 'VOC2012')
    names = make_dataset(root)
    return root, names


@pytest.fixture(scope='module')
def tiny_sam():
    return build_sam('tiny', None, device='cpu', seed=RANDOM_INIT_SEED)


# ------------------------------------------------------------------ layout / sharding


def test_cache_folders_come_from_the_consumers(tmp_path):
    """The jobs write where training reads: the dataset's se_map_dir (under data_root) and
    CPM's embedding_dir; a config without them needs --out."""
    from s2c.caches import embedding_dir, se_map_dir
    cfg = make_cfg('/d')
    assert se_map_dir(cfg) is None and embedding_dir(cfg) is None
    cfg.train_dataloader.dataset.se_map_dir = 'se_maps/x'
    cfg.model = dict(cpm=dict(embedding_dir='/e/vit_h'))
    assert se_map_dir(cfg) == '/d/se_maps/x' and embedding_dir(cfg) == '/e/vit_h'
    cfg.train_dataloader.dataset.se_map_dir = '/abs/se'
    assert se_map_dir(cfg) == '/abs/se'
    cfg.model.cpm.embedding_source = 'online'
    assert embedding_dir(cfg) is None
    with pytest.raises(ValueError, match='--out'):
        run_se_map_job(make_cfg(str(tmp_path)), progress=False)
    with pytest.raises(ValueError, match='--out'):
        run_embedding_job(make_cfg(str(tmp_path)), progress=False)


def test_shard_split_covers_every_image_exactly_once():
    names = [f'n{i}' for i in range(23)]
    assert shard_names(names, 1, 4) == ['n1', 'n5', 'n9', 'n13', 'n17', 'n21']
    for n_shards in (1, 2, 3, 5):
        for world in (1, 2, 3):
            parts = [select_names(names, (i, n_shards), r, world)
                     for i in range(n_shards) for r in range(world)]
            flat = [x for p in parts for x in p]
            assert sorted(flat) == sorted(names) and len(flat) == len(names)
    assert parse_shard('2/5') == (2, 5) and parse_shard(None) is None
    for bad in ('5/5', '-1/3', '1', 'a/b', '0/0'):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_torchrun_env_takes_rank_share(monkeypatch):
    monkeypatch.setenv('RANK', '1')
    monkeypatch.setenv('WORLD_SIZE', '3')
    monkeypatch.setenv('LOCAL_RANK', '1')
    assert dist_rank_world() == (1, 3, 1)
    names = [f'n{i}' for i in range(8)]
    assert select_names(names, None, 1, 3) == ['n1', 'n4', 'n7']


def test_non_zero_rank_waits_for_manifest(tmp_path):
    man = make_manifest('se_maps', 1, dict(a=1), {})
    with pytest.raises(TimeoutError):
        claim_folder(str(tmp_path), man, entry_suffix='.png', rank=1, timeout_s=0.3)
    claim_folder(str(tmp_path), man, entry_suffix='.png', rank=0)
    assert claim_folder(str(tmp_path), man, entry_suffix='.png', rank=1) is False
    other = make_manifest('se_maps', 1, dict(a=2), {})
    with pytest.raises(ManifestMismatchError, match='key.a'):
        claim_folder(str(tmp_path), other, entry_suffix='.png', rank=1, timeout_s=5)


# ------------------------------------------------------------------ SE map job


def test_se_job_shards_union_is_all_and_rerun_skips(dataset, tmp_path):
    root, names = dataset
    out = str(tmp_path / 'se')
    cfg = make_cfg(root)
    s0 = run_se_map_job(cfg, out=out, shard='0/2', progress=False)
    assert sorted(s0.done) == sorted(names[0::2]) and s0.ok
    assert entries(out, '.png') == sorted(names[0::2])
    s1 = run_se_map_job(cfg, out=out, shard=(1, 2), progress=False)
    assert sorted(s1.done) == sorted(names[1::2]) and not s1.skipped
    assert entries(out, '.png') == sorted(names)
    again = run_se_map_job(cfg, out=out, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(names)
    assert again.entries_on_disk == len(names) and again.bytes_on_disk > 0
    for name, (h, w) in zip(names, SIZES):
        se = load_se_map(osp.join(out, name + '.png'))
        assert se.dtype == np.uint16 and se.shape == (h, w) and se.max() >= 1
    man = json.load(open(osp.join(out, 'manifest.json')))
    assert man['kind'] == 'se_maps' and man['key']['provider']['type'] == 'felzenszwalb'
    assert man['key']['sam'] is None  # felzenszwalb does not run SAM


def test_manifest_refusal_and_overwrite(dataset, tmp_path, capsys):
    root, names = dataset
    out = str(tmp_path / 'se')
    assert run_se_map_job(make_cfg(root), out=out, progress=False).ok
    changed = make_cfg(root, provider=dict(type='felzenszwalb', scale=200.0, sigma=0.5,
                                           min_size=20))
    with pytest.raises(ManifestMismatchError) as err:
        run_se_map_job(changed, out=out, progress=False)
    msg = str(err.value)
    assert 'key.provider.scale' in msg and '50.0' in msg and '200.0' in msg
    assert '--overwrite' in msg and '--out' in msg
    # the CLI refuses with exit status 2 and the same message
    cfg_file = tmp_path / 'changed.py'
    changed.dump(str(cfg_file))
    tool = load_tool('cache_se_maps')
    assert tool.main([str(cfg_file), '--out', out, '--no-progress']) == 2
    assert 'key.provider.scale' in capsys.readouterr().err
    # --overwrite: accepted, every entry recomputed, manifest replaced
    summary = run_se_map_job(changed, out=out, overwrite=True, progress=False)
    assert sorted(summary.done) == sorted(names) and summary.skipped == []
    man = json.load(open(osp.join(out, 'manifest.json')))
    assert man['key']['provider']['scale'] == 200.0


def test_provider_flag_overrides_type(dataset, tmp_path):
    root, names = dataset
    out = str(tmp_path / 'slic')
    summary = run_se_map_job(make_cfg(root), provider='slic', out=out, names=names[:2],
                             progress=False)
    assert summary.ok and sorted(summary.done) == sorted(names[:2])
    man = json.load(open(osp.join(out, 'manifest.json')))
    assert man['key']['provider']['type'] == 'slic'
    assert 'scale' not in man['key']['provider']  # felzenszwalb-only parameter dropped


def test_corrupt_image_is_failed_others_done_exit_nonzero(dataset, tmp_path, capsys):
    root, names = dataset
    with open(osp.join(root, 'JPEGImages', names[2] + '.jpg'), 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 this is not a jpeg')
    os.remove(osp.join(root, 'JPEGImages', names[4] + '.jpg'))
    out = str(tmp_path / 'se')
    summary = run_se_map_job(make_cfg(root), out=out, progress=False)
    assert set(summary.failed) == {names[2], names[4]}
    assert 'cannot read image' in summary.failed[names[2]]
    assert 'not found' in summary.failed[names[4]]
    assert sorted(summary.done) == sorted(set(names) - {names[2], names[4]})
    assert not summary.ok and 'FAILED (2)' in summary.format()
    cfg_file = tmp_path / 'cfg.py'
    make_cfg(root).dump(str(cfg_file))
    assert load_tool('cache_se_maps').main([str(cfg_file), '--out', out, '--no-progress']) == 1
    printed = capsys.readouterr().out
    assert names[2] in printed and names[4] in printed and 'skipped 5' in printed


def test_se_verify_detects_truncated_png(dataset, tmp_path):
    root, names = dataset
    out = str(tmp_path / 'se')
    run_se_map_job(make_cfg(root), out=out, progress=False)
    assert run_se_map_job(make_cfg(root), out=out, verify=True, progress=False).ok
    path = osp.join(out, names[1] + '.png')
    truncate(path, 0.5)
    bad = run_se_map_job(make_cfg(root), out=out, verify=True, progress=False)
    assert list(bad.failed) == [names[1]] and not bad.ok


def test_corrupt_manifest_refused_then_replaced_by_overwrite(dataset, tmp_path, capsys):
    root, names = dataset
    out = str(tmp_path / 'se')
    cfg = make_cfg(root)
    assert run_se_map_job(cfg, out=out, progress=False).ok
    man_path = osp.join(out, 'manifest.json')
    good = json.load(open(man_path))
    text = open(man_path).read()
    with open(man_path, 'w') as f:  # truncated, like a disk-full write by an old version
        f.write(text[:len(text) // 2])
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    tool = load_tool('cache_se_maps')
    # without --overwrite: a clear refusal (exit 2), entries untouched
    assert tool.main([str(cfg_file), '--out', out, '--no-progress']) == 2
    err = capsys.readouterr().err
    assert 'unreadable' in err and '--overwrite' in err
    assert entries(out, '.png') == sorted(names)
    with pytest.raises(ManifestUnreadableError):
        run_se_map_job(cfg, out=out, progress=False)
    # a non-zero rank refuses too, or with --overwrite waits for rank 0's new manifest
    with pytest.raises(ValueError, match='unreadable'):
        claim_folder(out, good, entry_suffix='.png', rank=1, timeout_s=5)
    with pytest.raises(TimeoutError):
        claim_folder(out, good, entry_suffix='.png', rank=1, overwrite=True, timeout_s=0.3)
    # --overwrite, as the message says: every entry recomputed and a fresh manifest
    assert tool.main([str(cfg_file), '--out', out, '--no-progress', '--overwrite']) == 0
    assert 'done 7 + skipped 0 + failed 0' in capsys.readouterr().out
    fresh = json.load(open(man_path))
    assert manifest_differences(fresh, good) == []
    again = run_se_map_job(cfg, out=out, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(names)
    # a manifest that is valid JSON but not an object, and binary garbage, alike
    for junk in (b'[1, 2]', b'\xff\xfe\x00garbage'):
        with open(man_path, 'wb') as f:
            f.write(junk)
        with pytest.raises(ValueError, match='--overwrite'):
            run_se_map_job(cfg, out=out, progress=False)
        summary = run_se_map_job(cfg, out=out, overwrite=True, progress=False)
        assert sorted(summary.done) == sorted(names)


@pytest.mark.parametrize('tool_name', ['cache_se_maps', 'cache_sam_embeddings'])
def test_verify_without_cache_reports_missing_and_checks_nothing(dataset, tmp_path, capsys,
                                                                 tool_name):
    root, names = dataset
    cfg = make_cfg(root)
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    tool = load_tool(tool_name)
    job = run_se_map_job if tool_name == 'cache_se_maps' else run_embedding_job
    missing = str(tmp_path / 'doesnotexist')
    assert tool.main([str(cfg_file), '--out', missing, '--verify', '--no-progress']) != 0
    captured = capsys.readouterr()
    assert 'checked' not in captured.out and 'good' not in captured.out  # no invented counts
    err = captured.err
    assert missing in err and 'does not exist' in err
    assert '--data-root' in err and '--out' in err and 'without --verify' in err
    assert tool_name in err
    assert not osp.exists(missing)  # verifying creates nothing
    with pytest.raises(FileNotFoundError, match='without --verify'):
        job(cfg, out=missing, verify=True, progress=False)
    # a folder without manifest.json (e.g. the wrong folder) is refused the same way
    os.makedirs(missing)
    assert tool.main([str(cfg_file), '--out', missing, '--verify', '--no-progress']) != 0
    captured = capsys.readouterr()
    assert 'checked' not in captured.out
    assert 'manifest.json' in captured.err and 'without --verify' in captured.err
    assert os.listdir(missing) == []


def test_se_resume_check_recomputes_map_of_wrong_size(dataset, tmp_path):
    root, names = dataset
    out = str(tmp_path / 'se')
    cfg = make_cfg(root)
    run_se_map_job(cfg, out=out, progress=False)
    h, w = SIZES[2]
    save_se_map(osp.join(out, names[2] + '.png'), np.ones((h + 3, w), np.uint16))
    summary = run_se_map_job(cfg, out=out, progress=False)
    assert summary.done == [names[2]] and summary.ok
    assert load_se_map(osp.join(out, names[2] + '.png')).shape == (h, w)
    assert run_se_map_job(cfg, out=out, verify=True, progress=False).ok


def test_se_verify_remedy_and_repair(dataset, tmp_path, capsys):
    root, names = dataset
    out = str(tmp_path / 'se')
    cfg = make_cfg(root)
    run_se_map_job(cfg, out=out, progress=False)
    truncated, resized, removed = names[1], names[3], names[5]
    path = osp.join(out, truncated + '.png')
    truncate(path, 0.5)  # the header still parses
    h, w = SIZES[3]
    save_se_map(osp.join(out, resized + '.png'), np.ones((h, w + 5), np.uint16))
    os.remove(osp.join(out, removed + '.png'))
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    tool = load_tool('cache_se_maps')
    assert tool.main([str(cfg_file), '--out', out, '--verify', '--no-progress']) == 1
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert 'BAD ENTRIES (3)' in '\n'.join(printed)
    remedy = printed[-1]
    assert '--repair' in remedy
    assert f'{truncated}.png' in remedy and f'{resized}.png' in remedy
    assert f'{removed}.png' not in remedy and 'missing' in remedy
    # --repair: full verification, the bad files deleted and recomputed with the missing one
    assert tool.main([str(cfg_file), '--out', out, '--repair', '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert 'done 3 + skipped 4 + failed 0' in printed
    assert 'REPAIRED (2)' in printed and truncated in printed and resized in printed
    assert run_se_map_job(cfg, out=out, verify=True, progress=False).ok
    again = run_se_map_job(cfg, out=out, repair=True, progress=False)
    assert again.done == [] and again.repaired == {} and len(again.skipped) == len(names)


# ------------------------------------------------------------------ embedding cache


def test_embedding_fp16_round_trip_and_get_batch(dataset, tmp_path, tiny_sam):
    root, names = dataset
    out = str(tmp_path / 'emb')
    summary = run_embedding_job(make_cfg(root, early=True), out=out, batch_size=3,
                                progress=False)
    assert summary.ok and sorted(summary.done) == sorted(names)
    store = EmbeddingStore(out)
    assert store.has_early and store.names() == sorted(names)
    idx = early_block_index(tiny_sam, 'tiny')
    for name in names[:3]:
        img = read_rgb_image(osp.join(root, 'JPEGImages', name + '.jpg'))
        ref = encode_images(tiny_sam, [img], early_block=idx)
        got = store.get(name)
        assert got['embedding'].dtype == np.float16
        # float16 keeps 11 significant bits: relative error <= 2**-11
        emb_ref = ref.embeddings[0].numpy()
        np.testing.assert_allclose(got['embedding'].astype(np.float32), emb_ref,
                                   rtol=2 ** -11, atol=1e-6)
        np.testing.assert_allclose(got['early'].astype(np.float32), ref.early[0].numpy(),
                                   rtol=2 ** -11, atol=1e-6)
        assert got['input_size'] == tuple(ref.input_sizes[0].tolist())
    batch = store.get_batch([names[1], names[0], names[1]], 'cpu')
    assert batch.embeddings.shape == (3, 256, 16, 16)
    assert batch.embeddings.dtype == torch.float32 and batch.img_size == 256
    assert batch.early.shape[:3] == (3, 16, 16) and batch.early.dtype == torch.float32
    assert batch.input_sizes.dtype == torch.long
    assert batch.input_sizes.tolist() == [list(EXPECTED_INPUT[1]), list(EXPECTED_INPUT[0]),
                                          list(EXPECTED_INPUT[1])]
    assert batch.original_sizes.tolist() == [[48, 48], [40, 56], [48, 48]]
    torch.testing.assert_close(batch.embeddings[0], batch.embeddings[2])
    torch.testing.assert_close(batch.embeddings[1],
                               torch.from_numpy(np.array(store.get(names[0])['embedding'])).float())
    assert store.get_batch(names[:1], 'cpu', with_early=False).early is None
    with pytest.raises(KeyError, match='cache_sam_embeddings'):
        store.get('nope')
    man = store.manifest
    # the key names the encoder (random weights: seed 0), not the checkpoint file
    assert man['key']['encoder_id'] == encoder_id('tiny', None, seed=0) == store.encoder_id
    assert man['info']['random_init_seed'] == 0 and man['info']['checkpoint_sha256'] is None
    assert 'RANDOM WEIGHTS' in man['info']['warning']
    assert man['key']['embedding_shape'] == [256, 16, 16]
    # early_features=False into the same directory is refused (different key)
    with pytest.raises(ManifestMismatchError, match='early_features'):
        run_embedding_job(make_cfg(root, early=False), out=out, progress=False)


CRASH_SCRIPT = textwrap.dedent('''
    import json, os, sys
    from mmengine.config import Config
    from s2c.caches import embedding_job
    from s2c.utils import atomic_write

    cfg = Config(json.loads(sys.argv[1]))
    out, crash_at = sys.argv[2], int(sys.argv[3])
    real_save = embedding_job.save_entry
    calls = []

    def save_then_die(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == crash_at:
            # die half way through writing the temporary file, like kill -9
            ctx = atomic_write(path)
            tmp = ctx.__enter__()
            with open(tmp, 'wb') as f:
                f.write(b'\\x93NUMPY partial record')
                f.flush()
            os._exit(9)
        return real_save(path, *args, **kwargs)

    embedding_job.save_entry = save_then_die
    embedding_job.run_embedding_job(cfg, out=out, progress=False, num_workers=0)
''')


def test_embedding_job_with_a_sam_variant(dataset, tmp_path):
    """sam.variant reads a variant's checkpoint; its encoder makes the embeddings, which are
    keyed by that encoder's identity (the manifest also names the variant)."""
    root, names = dataset
    cfg = make_cfg(root, early=True)
    cfg['sam']['variant'] = 'robust_sam'
    out = str(tmp_path / 'emb_robust')
    assert run_embedding_job(cfg, out=out, progress=False).ok
    man = json.load(open(osp.join(out, 'manifest.json')))
    assert man['info']['variant'] == 'robust_sam'
    vanilla = str(tmp_path / 'emb')
    assert run_embedding_job(make_cfg(root, early=True), out=vanilla, names=names[:1],
                             progress=False).ok
    vman = json.load(open(osp.join(vanilla, 'manifest.json')))
    assert 'variant' not in vman['info'] and vman['key'] == man['key']
    # random weights of the same seed: the same encoder, so the same embeddings
    np.testing.assert_array_equal(EmbeddingStore(out).get(names[0])['embedding'],
                                  EmbeddingStore(vanilla).get(names[0])['embedding'])


def test_embedding_job_of_degraded_images(dataset, tmp_path, tiny_sam):
    """--degradation NAME:LEVEL encodes the degraded images into their own folder, keyed by the
    degradation; entries equal encoding the degraded image directly; reruns resume."""
    from s2c.datasets.degradations import degrade
    root, names = dataset
    out = str(tmp_path / 'emb_haze3')
    summary = run_embedding_job(make_cfg(root), out=out, degradation='haze:3', progress=False)
    assert summary.ok and len(summary.done) == len(names)
    key = json.load(open(osp.join(out, 'manifest.json')))['key']
    assert key['degradation'] == dict(name='haze', level=3, seed=0)
    img = read_rgb_image(osp.join(root, 'JPEGImages', names[0] + '.jpg'))
    ref = encode_images(tiny_sam, [degrade(img, 'haze', 3, seed=0, key=names[0])])
    np.testing.assert_allclose(EmbeddingStore(out).get(names[0])['embedding'].astype(np.float32),
                               ref.embeddings[0].numpy(), rtol=2 ** -11, atol=1e-6)
    again = run_embedding_job(make_cfg(root), out=out, degradation='haze:3', progress=False)
    assert len(again.skipped) == len(names) and not again.done
    with pytest.raises(ManifestMismatchError):   # another level into the same folder
        run_embedding_job(make_cfg(root), out=out, degradation='haze:4', progress=False)
    with pytest.raises(ValueError, match='embedding job only'):
        run_se_map_job(make_cfg(root), out=str(tmp_path / 'se'), degradation='haze:1')


def test_resume_after_crash_mid_write(dataset, tmp_path):
    root, names = dataset
    out = str(tmp_path / 'emb')
    cfg = make_cfg(root)
    proc = subprocess.run([sys.executable, '-c', CRASH_SCRIPT, json.dumps(cfg.to_dict()), out,
                           '3'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    # two entries finished, the third died mid-write: only a hidden temp file, no partial entry
    assert entries(out, '.npy') == sorted(names[:2])
    assert len(tmp_files(out)) == 1
    for name in names[:2]:
        assert check_entry(osp.join(out, name + '.npy')) is None
    summary = run_embedding_job(cfg, out=out, progress=False)
    assert sorted(summary.skipped) == sorted(names[:2])
    assert sorted(summary.done) == sorted(names[2:]) and summary.ok
    assert tmp_files(out) == []  # the stale temp file was cleaned
    assert entries(out, '.npy') == sorted(names)
    assert run_embedding_job(cfg, out=out, verify=True, progress=False).ok


def test_embedding_verify_lists_bad_entries(dataset, tmp_path, capsys):
    root, names = dataset
    out = str(tmp_path / 'emb')
    cfg = make_cfg(root)
    run_embedding_job(cfg, out=out, progress=False)
    truncated, flipped, removed = names[0], names[3], names[5]
    path = osp.join(out, truncated + '.npy')
    truncate(path, -100)
    flip_byte(osp.join(out, flipped + '.npy'))
    os.remove(osp.join(out, removed + '.npy'))
    summary = run_embedding_job(cfg, out=out, verify=True, progress=False)
    assert set(summary.failed) == {truncated, flipped, removed}
    assert summary.failed[truncated].startswith('truncated')
    assert summary.failed[flipped].startswith('crc mismatch')
    assert summary.failed[removed] == 'missing'
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    tool = load_tool('cache_sam_embeddings')
    assert tool.main([str(cfg_file), '--out', out, '--verify', '--no-progress']) == 1
    assert 'BAD ENTRIES (3)' in capsys.readouterr().out
    # a normal run repairs the truncated and missing entries; the quick check (header and
    # size) cannot see the flipped byte, --overwrite recomputes everything
    repaired = run_embedding_job(cfg, out=out, progress=False)
    assert sorted(repaired.done) == sorted([truncated, removed])
    run_embedding_job(cfg, out=out, overwrite=True, progress=False)
    assert run_embedding_job(cfg, out=out, verify=True, progress=False).ok


def test_embedding_verify_remedy_and_repair(dataset, tmp_path, capsys):
    root, names = dataset
    out = str(tmp_path / 'emb')
    cfg = make_cfg(root)
    run_embedding_job(cfg, out=out, progress=False)
    flipped, removed = names[3], names[5]
    flip_byte(osp.join(out, flipped + '.npy'))
    os.remove(osp.join(out, removed + '.npy'))
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    tool = load_tool('cache_sam_embeddings')
    assert tool.main([str(cfg_file), '--out', out, '--verify', '--no-progress']) == 1
    remedy = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert '--repair' in remedy and f'{flipped}.npy' in remedy and f'{removed}.npy' not in remedy
    # the quick check of a plain rerun cannot see the flipped byte: only the missing one
    plain = run_embedding_job(cfg, out=out, progress=False)
    assert plain.done == [removed] and flipped in plain.skipped
    # --repair (here together with --verify, which it includes) recomputes it
    assert tool.main([str(cfg_file), '--out', out, '--verify', '--repair',
                      '--no-progress']) == 0
    printed = capsys.readouterr().out
    assert 'done 1 + skipped 6 + failed 0' in printed and 'crc mismatch' in printed
    assert run_embedding_job(cfg, out=out, verify=True, progress=False).ok


# ------------------------------------------------------------------ real images, both jobs


def test_both_jobs_on_voc12_samples(voc_samples_root, tmp_path):
    cfg = make_cfg(voc_samples_root, early=True, provider=dict(
        type='sam_amg', points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        stability_score_offset=1.0, box_nms_thresh=0.7, crop_n_layers=0))
    names = open(osp.join(voc_samples_root, 'ImageSets/Segmentation/val.txt')).read().split()
    se_out, emb_out = str(tmp_path / 'se'), str(tmp_path / 'emb')
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    args = [str(cfg_file), '--split', 'val', '--no-progress']
    assert load_tool('cache_se_maps').main(args + ['--out', se_out]) == 0
    assert load_tool('cache_sam_embeddings').main(args + ['--out', emb_out]) == 0
    assert entries(se_out, '.png') == sorted(names)
    for name in names:
        se = load_se_map(osp.join(se_out, name + '.png'))
        assert se.shape == (513, 513) and se.dtype == np.uint16
        assert se.max() >= 1  # thresholds 0: at least one mask survives
    man = json.load(open(osp.join(se_out, 'manifest.json')))
    assert man['key']['sam']['model_type'] == 'tiny' and man['key']['sam']['random_init_seed'] == 0
    batch = EmbeddingStore(emb_out).get_batch(names, 'cpu')
    assert batch.embeddings.shape == (len(names), 256, 16, 16)
    assert batch.original_sizes.tolist() == [[513, 513]] * len(names)
    assert batch.input_sizes.tolist() == [[256, 256]] * len(names)
    assert torch.isfinite(batch.early).all()
    # rerun: everything skipped; verify: all good
    again = run_embedding_job(cfg, split='val', out=emb_out, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(names)
    for job, out in ((run_se_map_job, se_out), (run_embedding_job, emb_out)):
        assert job(cfg, split='val', out=out, verify=True, progress=False).ok
