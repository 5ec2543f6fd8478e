"""Cache jobs and their disk: refused when the job would not fit, "no space left" named when
the disk fills up, counts of empty SE maps, one sole writer per folder."""
from __future__ import annotations

import collections
import os
import os.path as osp

import pytest
from test_cache_jobs import make_cfg, make_dataset

from s2c.caches import run_se_map_job
from s2c.caches.embedding_store import entry_nbytes
from s2c.utils import fileio
from s2c.utils.fileio import InsufficientDiskSpaceError, check_free_space
from s2c.utils.locks import FolderBusyError, folder_lock

Usage = collections.namedtuple('Usage', 'total used free')


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(fileio.shutil, 'disk_usage', lambda path: Usage(10 ** 12, 0, free))


def test_se_map_job_refused_on_a_full_disk_then_runs(tmp_path, monkeypatch):
    root = str(tmp_path / 'VOC2012')
    names = make_dataset(root)
    out = str(tmp_path / 'se')
    _free(monkeypatch, 100_000)  # 7 maps x 64 KiB estimate = 448 KiB > 97.7 KiB
    with pytest.raises(InsufficientDiskSpaceError,
                       match=r'7 se_maps entries need about 448\.0 KiB in .*se, but only '
                             r'97\.7 KiB is free there: .*--shard I/N'):
        run_se_map_job(make_cfg(root), out=out, progress=False)
    assert not osp.isdir(out) or os.listdir(out) == []  # nothing written, not even a manifest
    monkeypatch.undo()
    assert run_se_map_job(make_cfg(root), out=out, progress=False).ok
    _free(monkeypatch, 0)  # a complete cache needs no space: the rerun only checks
    again = run_se_map_job(make_cfg(root), out=out, progress=False)
    assert again.ok and sorted(again.skipped) == sorted(names)


def test_coco_scale_embedding_estimate(tmp_path, monkeypatch):
    """82,081 ViT-H embeddings (fp16 256 x 64 x 64 + record fields): about 160 GiB."""
    per_entry = entry_nbytes((256, 64, 64))
    assert 2 * 2 ** 20 <= per_entry < 2 * 2 ** 20 + 1024
    _free(monkeypatch, 100 * 2 ** 30)
    with pytest.raises(InsufficientDiskSpaceError, match=r'need about 160\.[34] GiB .* only '
                                                         r'100\.0 GiB is free'):
        check_free_space(str(tmp_path / 'emb'), 82_081 * per_entry, '82,081 embeddings')
    _free(monkeypatch, 200 * 2 ** 30)
    assert check_free_space(str(tmp_path / 'a' / 'b'), 82_081 * per_entry, 'x') == 200 * 2 ** 30


def test_ranks_sharing_a_disk_check_their_shards_total(tmp_path, monkeypatch):
    root = str(tmp_path / 'VOC2012')
    make_dataset(root)  # 7 images
    out = str(tmp_path / 'se')
    _free(monkeypatch, 5 * 64 * 1024)  # room for 4 maps (with the 5 % margin), not 7
    half = run_se_map_job(make_cfg(root), out=out, shard='0/2', progress=False)
    assert half.ok and len(half.done) == 4  # a shard (another machine) needs only its part
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('LOCAL_RANK', '0')
    _free(monkeypatch, 2 * 64 * 1024 + 1)  # room for one rank's share, not both ranks' 3 maps
    with pytest.raises(InsufficientDiskSpaceError, match='3 se_maps entries'):
        run_se_map_job(make_cfg(root), out=out, progress=False)


def test_empty_se_maps_are_counted_and_warned(tmp_path, monkeypatch):
    """A SAM whose thresholds drop every mask gives segment-free maps: the summary says how
    many, and warns above 20 %."""
    root = str(tmp_path / 'VOC2012')
    make_dataset(root)
    provider = dict(type='sam_amg', points_per_side=4, pred_iou_thresh=1.01)  # nothing passes
    summary = run_se_map_job(make_cfg(root, provider=provider), out=str(tmp_path / 'se'),
                             progress=False)
    text = summary.format()
    assert summary.ok and 'empty maps  : 7 of 7 computed (100%)' in text
    assert 'WARNING: 100% of the SE maps have no segment' in text
    felz = run_se_map_job(make_cfg(root), out=str(tmp_path / 'felz'), progress=False)
    assert 'empty maps  : 0 of 7 computed (0%)' in felz.format()
    assert 'WARNING' not in felz.format()


def test_a_full_disk_mid_job_says_so_and_keeps_no_partial_entry(tmp_path, monkeypatch):
    """The disk fills up after 3 maps: those 3 are complete, the rest fail with "no space
    left on device in <folder>", no temporary or partial file remains, and a rerun with
    space completes only the missing ones."""
    import s2c.utils.se_map_io as se_io
    root = str(tmp_path / 'VOC2012')
    names = make_dataset(root)
    out = str(tmp_path / 'se')
    real = se_io.cv2.imwrite
    calls = {'n': 0}

    def filling_disk(path, img):
        calls['n'] += 1
        if calls['n'] <= 3:
            return real(path, img)
        with open(path, 'wb') as f:  # what a full disk leaves: a short file
            f.write(b'\\x89PNG\\r\\n')
        return True

    monkeypatch.setattr(se_io.cv2, 'imwrite', filling_disk)
    monkeypatch.setattr(se_io.shutil, 'disk_usage',  # full once 3 maps are written
                        lambda p: Usage(10 ** 12, 0, 0 if calls['n'] > 3 else 10 ** 12))
    summary = run_se_map_job(make_cfg(root), out=out, progress=False, num_workers=0)
    assert len(summary.done) == 3 and summary.failures.count == 4
    assert all('no space left on device in ' + out in msg for msg in summary.failed.values())
    assert not [f for f in os.listdir(out) if f.startswith('.tmp-')]
    assert len([f for f in os.listdir(out) if f.endswith('.png')]) == 3
    monkeypatch.undo()
    again = run_se_map_job(make_cfg(root), out=out, progress=False)
    assert again.ok and len(again.skipped) == 3 and sorted(again.done + again.skipped) == \
        sorted(names)


def test_a_second_writer_is_refused_not_allowed_to_delete_temp_files(tmp_path):
    root = str(tmp_path / 'VOC2012')
    make_dataset(root)
    out = str(tmp_path / 'se')
    with folder_lock(out, exclusive=False):  # e.g. a sharded job running on this folder
        with pytest.raises(FolderBusyError, match='another job is writing a se_maps cache'):
            run_se_map_job(make_cfg(root), out=out, progress=False)
        # another shard may join
        assert run_se_map_job(make_cfg(root), out=out, shard='1/2', progress=False).ok
    with folder_lock(out, exclusive=True):  # a sole writer holds it: shards must wait too
        with pytest.raises(FolderBusyError):
            run_se_map_job(make_cfg(root), out=out, shard='0/2', progress=False)
    assert run_se_map_job(make_cfg(root), out=out, progress=False).ok
