"""Both SAM caches with one image-encoder pass per image (run_sam_cache_jobs, tools/cache_sam.py):
the same files as the two separate jobs, one encoder call per image, resume per image and
per cache, manifests refused before anything is written."""
from __future__ import annotations

import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
from segment_anything.modeling import ImageEncoderViT
from test_cache_jobs import entries, flip_byte, load_tool, make_cfg, make_dataset

from s2c.caches import (
    EmbeddingStore,
    run_embedding_job,
    run_sam_cache_jobs,
    run_se_map_job,
)
from s2c.utils import ManifestMismatchError
from s2c.utils.se_map_io import load_se_map

#: A SAM AMG that keeps masks with random weights (thresholds 0) and runs fast.
AMG = dict(type='sam_amg', points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture
def dataset(tmp_path):
    root = str(tmp_path / 'VOC2012')
    return root, make_dataset(root, 4)


@pytest.fixture
def encoder_calls(monkeypatch):
    """Count every call of SAM's image encoder (any instance)."""
    calls = []
    real = ImageEncoderViT.forward

    def counting(self, x):
        calls.append(tuple(x.shape))
        return real(self, x)

    monkeypatch.setattr(ImageEncoderViT, 'forward', counting)
    return calls


def _cfg(root: str, dtype: str = 'float16', early: bool = False, provider: dict = AMG):
    cfg = make_cfg(root, early=early, provider=dict(provider))
    cfg.sam_embeddings.dtype = dtype
    return cfg


def _separate(cfg, out: str, **kw) -> tuple[str, str]:
    se, emb = osp.join(out, 'se'), osp.join(out, 'emb')
    assert run_se_map_job(cfg, out=se, progress=False, **kw).ok
    assert run_embedding_job(cfg, out=emb, progress=False, **kw).ok
    return se, emb


def _assert_same_caches(a: tuple[str, str], b: tuple[str, str], names: list[str]) -> None:
    """Equal SE maps, byte-identical embedding files, equal manifest keys."""
    for name in names:
        np.testing.assert_array_equal(load_se_map(osp.join(a[0], name + '.png')),
                                      load_se_map(osp.join(b[0], name + '.png')))
        assert filecmp.cmp(osp.join(a[1], name + '.npy'), osp.join(b[1], name + '.npy'),
                           shallow=False), name
    for x, y in zip(a, b):
        mx, my = (json.load(open(osp.join(d, 'manifest.json'))) for d in (x, y))
        assert (mx['kind'], mx['format_version'], mx['key']) == \
            (my['kind'], my['format_version'], my['key'])


@pytest.mark.parametrize('dtype,early', [('float16', False), ('int8', True)])
def test_one_encoder_pass_gives_the_separate_jobs_caches(dataset, tmp_path, encoder_calls,
                                                         dtype, early):
    root, names = dataset
    cfg = _cfg(root, dtype, early)
    sep = _separate(cfg, str(tmp_path / 'sep'))
    assert len(encoder_calls) == 2 * len(names)  # one per image and job
    encoder_calls.clear()
    comb = (str(tmp_path / 'c_se'), str(tmp_path / 'c_emb'))
    summary = run_sam_cache_jobs(cfg, se_out=comb[0], embedding_out=comb[1], batch_size=3,
                                 progress=False)
    assert summary.ok and summary.shared and summary.encoder_calls == len(names)
    assert len(encoder_calls) == len(names) and set(encoder_calls) == {(1, 3, 256, 256)}
    assert sorted(summary.se_maps.done) == sorted(summary.embeddings.done) == sorted(names)
    _assert_same_caches(sep, comb, names)
    text = summary.format()
    assert '[se_maps] compute summary' in text and '[sam_embeddings] compute summary' in text
    assert 'one encoder pass for both caches: 4 image-encoder call(s)' in text
    assert EmbeddingStore(comb[1]).storage_dtype == dtype
    # each separate job resumes the combined caches (same manifests): nothing to do
    encoder_calls.clear()
    assert run_se_map_job(cfg, out=comb[0], progress=False).skipped.__len__() == len(names)
    assert len(run_embedding_job(cfg, out=comb[1], progress=False).skipped) == len(names)
    assert encoder_calls == []


def test_resume_encodes_only_what_is_missing(dataset, tmp_path, encoder_calls):
    """Partial caches (an interrupted combined run, or separate jobs): an image with both
    entries is skipped; with only its embedding it is segmented (one encoder pass, the stored
    embedding kept); with only its SE map it is encoded; the result equals a fresh run."""
    root, names = dataset
    cfg = _cfg(root, 'int8', early=True)
    sep = _separate(cfg, str(tmp_path / 'sep'))
    se, emb = str(tmp_path / 'se'), str(tmp_path / 'emb')
    first = run_sam_cache_jobs(cfg, se_out=se, embedding_out=emb, names=names[:1],
                               progress=False)
    assert first.ok and first.se_maps.done == first.embeddings.done == names[:1]
    # names[1]: only its embedding; names[2]: only its SE map; names[3]: neither
    assert run_embedding_job(cfg, out=emb, names=[names[1]], progress=False).ok
    assert run_se_map_job(cfg, out=se, names=[names[2]], progress=False).ok
    kept = os.stat(osp.join(emb, names[1] + '.npy')).st_mtime_ns
    encoder_calls.clear()
    summary = run_sam_cache_jobs(cfg, se_out=se, embedding_out=emb, progress=False)
    assert summary.ok and summary.encoder_calls == len(encoder_calls) == 3
    assert sorted(summary.se_maps.skipped) == sorted([names[0], names[2]])
    assert sorted(summary.se_maps.done) == sorted([names[1], names[3]])
    assert sorted(summary.embeddings.skipped) == sorted([names[0], names[1]])
    assert sorted(summary.embeddings.done) == sorted([names[2], names[3]])
    assert os.stat(osp.join(emb, names[1] + '.npy')).st_mtime_ns == kept
    _assert_same_caches(sep, (se, emb), names)
    encoder_calls.clear()
    again = run_sam_cache_jobs(cfg, se_out=se, embedding_out=emb, progress=False)
    assert again.ok and again.encoder_calls == 0 and encoder_calls == []
    assert len(again.se_maps.skipped) == len(again.embeddings.skipped) == len(names)
    # repair: a corrupt embedding is found by the full check and recomputed alone
    flip_byte(osp.join(emb, names[3] + '.npy'), 10)
    fixed = run_sam_cache_jobs(cfg, se_out=se, embedding_out=emb, repair=True, progress=False)
    assert fixed.ok and fixed.embeddings.done == [names[3]] and fixed.se_maps.done == []
    assert names[3] in fixed.embeddings.repaired and fixed.encoder_calls == 1
    _assert_same_caches(sep, (se, emb), names)
    assert run_sam_cache_jobs(cfg, se_out=se, embedding_out=emb, verify=True,
                              progress=False).ok


def test_shards_together_are_the_whole_cache(dataset, tmp_path, encoder_calls):
    root, names = dataset
    cfg = _cfg(root)
    se, emb = str(tmp_path / 'se'), str(tmp_path / 'emb')
    for i in range(2):
        part = run_sam_cache_jobs(cfg, se_out=se, embedding_out=emb, shard=f'{i}/2',
                                  progress=False)
        assert part.ok and part.se_maps.done == part.embeddings.done == names[i::2]
    assert len(encoder_calls) == len(names)
    assert entries(se, '.png') == entries(emb, '.npy') == sorted(names)


def test_other_settings_are_refused_before_anything_is_written(dataset, tmp_path):
    root, names = dataset
    se, emb = str(tmp_path / 'se'), str(tmp_path / 'emb')
    assert run_embedding_job(_cfg(root), out=emb, names=names[:1], progress=False).ok
    with pytest.raises(ManifestMismatchError, match=r"(?s)emb already holds a sam_embeddings "
                                                    r"cache .*key.dtype.*Nothing was written"):
        run_sam_cache_jobs(_cfg(root, 'int8'), se_out=se, embedding_out=emb, progress=False)
    assert not osp.exists(osp.join(se, 'manifest.json'))  # the SE folder was not claimed
    summary = run_sam_cache_jobs(_cfg(root, 'int8'), se_out=se, embedding_out=emb,
                                 overwrite=True, progress=False)
    assert summary.ok and len(summary.embeddings.done) == len(names)
    with pytest.raises(ValueError, match='--se-out / --embedding-out'):
        run_sam_cache_jobs(_cfg(root), out=emb, progress=False)
    with pytest.raises(ValueError, match='embedding job only'):
        run_sam_cache_jobs(_cfg(root), se_out=se, embedding_out=emb, degradation='haze:1')
    nothing = run_sam_cache_jobs(_cfg(root), progress=False)  # no se_map_dir, no CPM
    assert nothing.ok and nothing.summaries == [] and 'nothing to do' in nothing.format()


def test_without_sam_in_the_se_provider_the_jobs_run_one_after_the_other(dataset, tmp_path,
                                                                        encoder_calls):
    """Felzenszwalb SE maps need no encoder: the two jobs run as they are; a config with
    only one cache gets that one."""
    root, names = dataset
    felz = dict(type='felzenszwalb', scale=50.0, sigma=0.5, min_size=20)
    cfg = _cfg(root, provider=felz)
    sep = _separate(cfg, str(tmp_path / 'sep'))
    encoder_calls.clear()
    comb = (str(tmp_path / 'se'), str(tmp_path / 'emb'))
    summary = run_sam_cache_jobs(cfg, se_out=comb[0], embedding_out=comb[1], progress=False)
    assert summary.ok and not summary.shared and len(encoder_calls) == len(names)
    _assert_same_caches(sep, comb, names)
    only = run_sam_cache_jobs(cfg, embedding_out=str(tmp_path / 'e2'), progress=False)
    assert only.se_maps is None and only.ok and len(only.embeddings.done) == len(names)


def test_cache_sam_tool(dataset, tmp_path, capsys):
    root, names = dataset
    cfg = _cfg(root)
    cfg_file = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_file))
    se, emb = str(tmp_path / 'se'), str(tmp_path / 'emb')
    tool = load_tool('cache_sam')
    args = [str(cfg_file), '--se-out', se, '--embedding-out', emb, '--no-progress']
    assert tool.main(args) == 0
    out = capsys.readouterr().out
    assert 'done 4 + skipped 0 + failed 0' in out and 'one encoder pass' in out
    assert tool.main(args + ['--verify']) == 0
    assert tool.main([str(cfg_file), '--out', se, '--no-progress']) == 2
    assert '--se-out / --embedding-out' in capsys.readouterr().err
    os.remove(osp.join(emb, names[0] + '.npy'))
    assert tool.main(args + ['--verify']) == 1
    assert tool.main(args) == 0
    assert entries(emb, '.npy') == sorted(names)
