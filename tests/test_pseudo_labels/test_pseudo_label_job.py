"""Pseudo-label rules (threshold, se_merge), the batch job and its CLI."""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from PIL import Image

from s2c.cam import CamFileError, cam_manifest, load_cams, prepare_cam_dir, save_cams
from s2c.datasets import dataset_paths, read_split
from s2c.pseudo_labels import (
    apply_ignore,
    make_pseudo_labels,
    read_bg_threshold,
    se_merge_labels,
    threshold_labels,
)
from s2c.utils import VOC_PALETTE, load_label_png, save_label_png
from s2c.utils.manifest import ManifestMismatchError, manifest_id

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


# ----------------------------------------------------------------------------- rules
def test_threshold_rule_constructed_case():
    keys = np.array([2, 7])
    cams = np.array([[[0.9, 0.2, 0.5], [0.30, 0.0, 0.6]],
                     [[0.1, 0.4, 0.5], [0.31, 0.0, 0.7]]], np.float32)
    label, score = threshold_labels(cams, keys, bg_threshold=0.3)
    # 0.9 -> class 2 (label 3); 0.4 -> class 7 (label 8); tie 0.5/0.5 -> first key;
    # max 0.31 > 0.3 -> class 7; all-zero -> background; 0.7 -> class 7.
    np.testing.assert_array_equal(label, [[3, 8, 3], [8, 0, 8]])
    np.testing.assert_allclose(score, [[0.9, 0.4, 0.5], [0.31, 1.0, 0.7]], atol=1e-7)
    # A pixel whose max equals the threshold is background (ties go to background).
    label, score = threshold_labels(cams, keys, bg_threshold=0.31)
    assert label[1, 0] == 0 and score[1, 0] == pytest.approx(0.69)
    # No classes at all: background everywhere with score 1.
    label, score = threshold_labels(np.zeros((0, 2, 2)), np.zeros(0), 0.2)
    np.testing.assert_array_equal(label, 0)
    np.testing.assert_array_equal(score, 1.0)


def test_apply_ignore_marks_low_scores():
    label = np.array([[0, 1], [2, 3]])
    score = np.array([[0.2, 0.5], [0.49, 0.9]])
    np.testing.assert_array_equal(apply_ignore(label, score, 0.5), [[255, 1], [255, 3]])
    out = apply_ignore(label, score, None)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, label)
    with pytest.raises(ValueError, match='label values'):
        apply_ignore(np.array([[255]]), np.array([[1.0]]), None)


def _binary_cams(label_map: np.ndarray, keys: list[int], value: float = 0.9):
    """CAMs that reproduce ``label_map`` under the threshold rule at t = 0.5."""
    cams = np.stack([(label_map == k + 1) * value for k in keys]).astype(np.float32)
    return cams, np.array(keys)


# CAM label map L (classes 1 = A, 2 = B, 3 = C) and a hand-made SE map.
L_MAP = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 0, 0, 2, 0, 3, 3],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
SE_MAP = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 2, 2, 2, 2, 2],
    [0, 1, 1, 1, 1, 2, 2, 2, 2, 2],
    [0, 3, 3, 3, 3, 2, 2, 2, 2, 2],
    [4, 4, 4, 4, 0, 0, 0, 0, 0, 0],
    [4, 4, 4, 4, 0, 0, 0, 0, 0, 0]], np.uint16)


def test_se_merge_rule_hand_made_segments():
    cams, keys = _binary_cams(L_MAP, [0, 1, 2])
    label, score = se_merge_labels(cams, keys, SE_MAP, bg_threshold=0.5)
    # segment 1: 6 of its 8 pixels in A (purity 0.75 > 0.5) -> whole segment class 1.
    # segment 2 (15 px): holds all of B (1 px) and all of C (2 px): both qualify by
    #   coverage (100 % >= 85 %); C has the larger purity (2/15 > 1/15) -> class 3.
    # segment 3: no CAM pixels -> keeps L (background).
    # segment 4: 2 of 8 pixels in A (purity 0.25) holding 2/8 of A (25 %) -> keeps L.
    # uncovered pixels (id 0) keep L, including A's pixels at row 4.
    expected = np.array([
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 3, 3, 3, 3, 3],
        [0, 1, 1, 1, 1, 3, 3, 3, 3, 3],
        [0, 0, 0, 0, 0, 3, 3, 3, 3, 3],
        [0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(label, expected)
    exp_score = np.where(L_MAP > 0, 0.9, 1.0)
    exp_score[SE_MAP == 1] = 0.75
    exp_score[SE_MAP == 2] = 2 / 15
    np.testing.assert_allclose(score, exp_score, atol=1e-6)
    # Order independence: renumbering segments changes nothing.
    perm = np.array([0, 4, 3, 2, 1], np.uint16)
    label2, _ = se_merge_labels(cams, keys, perm[SE_MAP], bg_threshold=0.5)
    np.testing.assert_array_equal(label2, expected)


def test_se_merge_thresholds_are_strict_majority_and_inclusive_coverage():
    # 1 x 40 strip: class-1 region = first 20 pixels.
    lab = np.zeros((1, 40), np.int64)
    lab[0, :20] = 1
    cams, keys = _binary_cams(lab, [0])
    # Segment holding 17 of the 20 region pixels + 23 background: purity 17/40 < 0.5,
    # coverage 17/20 = 0.85 -> qualifies; the remaining 3 region pixels are uncovered.
    se = np.zeros((1, 40), np.uint16)
    se[0, 3:] = 7
    label, _ = se_merge_labels(cams, keys, se, 0.5)
    np.testing.assert_array_equal(label[0], [1] * 40)
    # 16 of 20 (80 %) and purity 16/37 -> does not qualify: L is kept.
    se[0, :4] = 0
    label, _ = se_merge_labels(cams, keys, se, 0.5)
    np.testing.assert_array_equal(label, lab)
    # Purity exactly 0.5 (2 of 4 pixels), coverage 2/20: no (strictly more than half).
    se = np.zeros((1, 40), np.uint16)
    se[0, 18:22] = 1
    label, _ = se_merge_labels(cams, keys, se, 0.5)
    np.testing.assert_array_equal(label, lab)
    # Purity 3/5 > 0.5 -> the two background pixels join class 1.
    se[0, 17:22] = 1
    label, _ = se_merge_labels(cams, keys, se, 0.5)
    np.testing.assert_array_equal(label[0, :22], [1] * 22)
    np.testing.assert_array_equal(label[0, 22:], 0)


def test_se_merge_tie_goes_to_lowest_class_and_size_check():
    lab = np.array([[1, 0, 0, 2, 0, 0]])
    cams, keys = _binary_cams(lab, [0, 1])
    se = np.ones((1, 6), np.uint16)       # one segment: both classes 100 % covered, purity 1/6
    label, score = se_merge_labels(cams, keys, se, 0.5)
    np.testing.assert_array_equal(label, [[1] * 6])
    np.testing.assert_allclose(score, 1 / 6, atol=1e-7)
    with pytest.raises(ValueError, match='SE map size'):
        se_merge_labels(cams, keys, np.ones((2, 6), np.uint16), 0.5)


# ----------------------------------------------------------------------------- I/O helpers
def test_cam_io_round_trip_and_errors(tmp_path):
    cams = np.random.default_rng(0).random((2, 5, 7)).astype(np.float32)
    save_cams(str(tmp_path / 'a.npz'), [3, 11], cams)
    keys, back = load_cams(str(tmp_path / 'a.npz'))
    assert keys.dtype == np.int64 and keys.tolist() == [3, 11]
    assert back.dtype == np.float32 and back.shape == (2, 5, 7)
    np.testing.assert_allclose(back, cams, atol=1e-3)        # float16 storage
    with np.load(tmp_path / 'a.npz') as z:
        assert z['cams'].dtype == np.float16
    with pytest.raises(FileNotFoundError, match='nope.npz'):
        load_cams(str(tmp_path / 'nope.npz'))
    (tmp_path / 'bad.npz').write_bytes(b'not a zip')
    with pytest.raises(CamFileError, match='bad.npz'):
        load_cams(str(tmp_path / 'bad.npz'))
    np.savez(tmp_path / 'nokeys.npz', cams=cams)
    with pytest.raises(CamFileError, match='lacks'):
        load_cams(str(tmp_path / 'nokeys.npz'))
    with pytest.raises(ValueError, match='K = len'):
        save_cams(str(tmp_path / 'c.npz'), [1], cams)


def test_read_bg_threshold(tmp_path):
    (tmp_path / 'a.json').write_text(json.dumps({'threshold': 0.23, 'miou': 0.5}))
    assert read_bg_threshold(str(tmp_path / 'a.json')) == 0.23
    (tmp_path / 'b.json').write_text(json.dumps({'cam': {'bg_threshold': 0.31}}))
    assert read_bg_threshold(str(tmp_path / 'b.json')) == 0.31
    (tmp_path / 'c.json').write_text(json.dumps({'miou': 0.5}))
    with pytest.raises(ValueError, match='c.json.*miou'):
        read_bg_threshold(str(tmp_path / 'c.json'))


# ----------------------------------------------------------------------------- job
H, W = 12, 16


def _make_dataset(root, n=4, seed=0):
    """Images, CAMs (two classes), SE maps and expected threshold labels (t=0.5)."""
    rng = np.random.default_rng(seed)
    dirs = {k: osp.join(root, k) for k in ('img', 'cams', 'se')}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    names, expected = [], {}
    for i in range(n):
        name = f'im_{i}'
        names.append(name)
        keys = np.array([i % 20, (i + 5) % 20])
        cams = rng.random((2, H, W)).astype(np.float32)
        save_cams(osp.join(dirs['cams'], name + '.npz'), keys, cams)
        cams16 = cams.astype(np.float16).astype(np.float32)
        lab = np.where(cams16.max(0) > 0.5, keys[cams16.argmax(0)] + 1, 0)
        expected[name] = lab
        Image.fromarray(rng.integers(0, 255, (H, W, 3), np.uint8)).save(
            osp.join(dirs['img'], name + '.jpg'))
        se = np.zeros((H, W), np.uint16)
        se[:, W // 2:] = 300 + i          # > 255: exercises the 16-bit path
        cv2.imwrite(osp.join(dirs['se'], name + '.png'), se)
    return names, dirs, expected


def test_job_threshold_writes_palette_pngs(tmp_path):
    names, d, expected = _make_dataset(str(tmp_path))
    out = str(tmp_path / 'out')
    s = make_pseudo_labels(d['cams'], out, names, 'threshold', img_dir=d['img'],
                           bg_threshold=0.5, progress=False)
    assert s.ok and sorted(s.done) == names and s.skipped == []
    for name in names:
        img = Image.open(osp.join(out, name + '.png'))
        assert img.mode == 'P'
        pal = np.array(img.getpalette()[:768], np.uint8).reshape(256, 3)
        np.testing.assert_array_equal(pal, VOC_PALETTE)
        np.testing.assert_array_equal(np.asarray(img), expected[name])
        np.testing.assert_array_equal(load_label_png(osp.join(out, name + '.png')),
                                      expected[name])
    manifest = json.load(open(osp.join(out, 'pseudo_labels.json')))['key']
    assert manifest['method'] == 'threshold' and manifest['params']['bg_threshold'] == 0.5
    # --ignore-below: foreground pixels with CAM < 0.7 become 255.
    out2 = str(tmp_path / 'out2')
    make_pseudo_labels(d['cams'], out2, names[:1], 'threshold', bg_threshold=0.5,
                       ignore_below=0.7, progress=False)
    keys, cams = load_cams(osp.join(d['cams'], names[0] + '.npz'))
    lab = expected[names[0]]
    top = cams.max(0)
    exp = np.where(lab > 0, np.where(top < 0.7, 255, lab), np.where(1 - top < 0.7, 255, 0))
    np.testing.assert_array_equal(load_label_png(osp.join(out2, names[0] + '.png')), exp)


def test_job_se_merge_and_workers_agree(tmp_path):
    names, d, expected = _make_dataset(str(tmp_path), n=5)
    out1, out2 = str(tmp_path / 'w1'), str(tmp_path / 'w2')
    s1 = make_pseudo_labels(d['cams'], out1, names, 'se_merge', se_dir=d['se'], img_dir=d['img'],
                            bg_threshold=0.5, workers=1, progress=False)
    s2 = make_pseudo_labels(d['cams'], out2, names, 'se_merge', se_dir=d['se'], img_dir=d['img'],
                            bg_threshold=0.5, workers=2, progress=False)
    assert s1.ok and s2.ok and sorted(s2.done) == names
    for name in names:
        a = load_label_png(osp.join(out1, name + '.png'))
        b = load_label_png(osp.join(out2, name + '.png'))
        np.testing.assert_array_equal(a, b)
        keys, cams = load_cams(osp.join(d['cams'], name + '.npz'))
        se = cv2.imread(osp.join(d['se'], name + '.png'), cv2.IMREAD_UNCHANGED)
        ref, _ = se_merge_labels(cams, keys, se, 0.5)
        np.testing.assert_array_equal(a, ref)
        np.testing.assert_array_equal(a[:, :W // 2], expected[name][:, :W // 2])  # uncovered


def test_job_is_resumable_and_never_rewrites(tmp_path):
    names, d, expected = _make_dataset(str(tmp_path))
    out = str(tmp_path / 'out')
    os.makedirs(out)
    # A pre-existing output (different content) must survive untouched.
    pre = osp.join(out, names[0] + '.png')
    Image.fromarray(np.full((H, W), 7, np.uint8), mode='L').save(pre)
    os.utime(pre, ns=(10**18, 10**18))
    pre_bytes = open(pre, 'rb').read()
    s = make_pseudo_labels(d['cams'], out, names, 'threshold', bg_threshold=0.5, progress=False)
    assert s.skipped == [names[0]] and sorted(s.done) == names[1:]
    assert open(pre, 'rb').read() == pre_bytes and os.stat(pre).st_mtime_ns == 10**18
    # Second run: everything skipped, nothing touched.
    for n in names:
        os.utime(osp.join(out, n + '.png'), ns=(10**18, 10**18))
    s = make_pseudo_labels(d['cams'], out, names, 'threshold', bg_threshold=0.5, progress=False)
    assert s.done == [] and sorted(s.skipped) == names and s.ok
    assert all(os.stat(osp.join(out, n + '.png')).st_mtime_ns == 10**18 for n in names)
    # Different parameters into the same folder: refused without overwrite.
    with pytest.raises(ValueError, match='--overwrite'):
        make_pseudo_labels(d['cams'], out, names, 'threshold', bg_threshold=0.3, progress=False)
    # --overwrite rewrites all, including the foreign pre-existing file.
    s = make_pseudo_labels(d['cams'], out, names, 'threshold', bg_threshold=0.5,
                           overwrite=True, progress=False)
    assert sorted(s.done) == names and s.skipped == []
    assert all(os.stat(osp.join(out, n + '.png')).st_mtime_ns != 10**18 for n in names)
    np.testing.assert_array_equal(load_label_png(pre), expected[names[0]])
    assert not [f for f in os.listdir(out) if f.startswith('.tmp-')]


def test_job_bad_inputs_are_named_and_counted(tmp_path):
    names, d, expected = _make_dataset(str(tmp_path), n=9)
    os.remove(osp.join(d['cams'], 'im_0.npz'))                                   # missing CAM
    open(osp.join(d['cams'], 'im_1.npz'), 'wb').write(b'garbage')                # unreadable
    save_cams(osp.join(d['cams'], 'im_2.npz'), [1], np.zeros((1, H + 1, W)))     # vs image
    Image.fromarray(np.zeros((H, W + 2, 3), np.uint8)).save(osp.join(d['img'], 'im_3.jpg'))
    cls = {n: np.zeros(20, np.float32) for n in names}                           # vs labels
    for n in names[2:]:
        cls[n][load_cams(osp.join(d['cams'], n + '.npz'))[0]] = 1
    cls['im_4'][9] = 0          # the CAM of im_4 has classes (4, 9); the image only 4
    np.save(tmp_path / 'cls_labels.npy', cls)                                    # PSA format
    cv2.imwrite(osp.join(d['se'], 'im_5.png'), np.ones((H, W - 1), np.uint16))  # vs SE map
    os.remove(osp.join(d['se'], 'im_6.png'))                                      # missing SE
    save_cams(osp.join(d['cams'], 'im_7.npz'), [25], np.zeros((1, H, W)))        # class >= 20
    names = names + ['not_there']
    out = str(tmp_path / 'out')
    s = make_pseudo_labels(d['cams'], out, names, 'se_merge', img_dir=d['img'], se_dir=d['se'],
                           bg_threshold=0.5, cls_labels=str(tmp_path / 'cls_labels.npy'),
                           progress=False)
    assert not s.ok
    assert s.failures.counts() == {'missing_cam': 2, 'bad_cam': 2, 'size_mismatch': 3,
                                   'unexpected_classes': 1, 'missing_se_map': 1}
    assert sorted(s.failures.names('missing_cam')) == ['im_0', 'not_there']
    assert sorted(s.failures.names('bad_cam')) == ['im_1', 'im_7']
    assert sorted(s.failures.names('size_mismatch')) == ['im_2', 'im_3', 'im_5']
    assert s.failures.names('unexpected_classes') == ['im_4']
    assert s.failures.names('missing_se_map') == ['im_6']
    assert s.failures.count == 9 and s.done == ['im_8']
    assert sorted(os.listdir(out)) == ['im_8.png', 'pseudo_labels.json']
    text = s.format()
    assert 'missing_cam: 2' in text and 'im_4' in text and 'classes [9]' in text
    assert 'done 1 + skipped 0 + failed 9' in text and 'FAILED (9)' in text


def test_dataset_paths_from_config(tmp_path):
    ds = dict(type='RepeatDataset', times=2,
              dataset=dict(data_root='/r', ann_file='lists/a.txt', img_dir='JPEGImages',
                           img_suffix='.png'))
    p = dataset_paths(ds)
    assert (p.split_file, p.img_dir, p.img_suffix) == ('/r/lists/a.txt', '/r/JPEGImages', '.png')
    p = dataset_paths(ds, split='val', data_root='/other')
    assert p.split_file == '/other/ImageSets/Segmentation/val.txt'
    assert p.img_dir == '/other/JPEGImages'
    (tmp_path / 'x.txt').write_text('a\n')
    assert dataset_paths(ds, split=str(tmp_path / 'x.txt')).split_file == str(tmp_path / 'x.txt')
    with pytest.raises(ValueError, match='data-root'):
        dataset_paths({})
    with pytest.raises(FileNotFoundError, match='split list /x/val.txt not found'):
        dataset_paths(ds, split='/x/val.txt')
    # the dataset's cls_labels.npy, when it exists, lets the job check CAM classes
    assert p.cls_labels is None
    np.save(tmp_path / 'cls_labels.npy', {'a': np.ones(20, np.float32)})
    assert dataset_paths(dict(data_root=str(tmp_path), ann_file='x.txt')).cls_labels == \
        str(tmp_path / 'cls_labels.npy')


def test_job_usage_errors(tmp_path):
    names, d, _ = _make_dataset(str(tmp_path), n=1)
    with pytest.raises(ValueError, match="method 'sam' needs the CPM settings"):
        make_pseudo_labels(d['cams'], str(tmp_path / 'o'), names, 'sam', progress=False)
    with pytest.raises(ValueError, match='background threshold'):
        make_pseudo_labels(d['cams'], str(tmp_path / 'o'), names, 'threshold', progress=False)
    with pytest.raises(ValueError, match='se_dir'):
        make_pseudo_labels(d['cams'], str(tmp_path / 'o'), names, 'se_merge', bg_threshold=0.5,
                           progress=False)
    with pytest.raises(KeyError, match=r"unknown pseudo-label method 'nope'.*'se_merge'"):
        make_pseudo_labels(d['cams'], str(tmp_path / 'o'), names, 'nope', progress=False)
    with pytest.raises(ValueError, match='bg_treshold'):  # a misspelled parameter is an error
        make_pseudo_labels(d['cams'], str(tmp_path / 'o'), names, 'threshold', bg_treshold=0.5,
                           progress=False)


# ----------------------------------------------------------------------------- CLI
def test_cli_exit_status_and_summary(tmp_path, run_tool):
    names, d, expected = _make_dataset(str(tmp_path), n=3)
    os.remove(osp.join(d['cams'], 'im_1.npz'))
    split = tmp_path / 'list.txt'
    split.write_text('\n'.join(names) + '\n')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'train_dataloader = dict(dataset=dict(data_root={str(tmp_path)!r}, '
                   f'ann_file="list.txt", img_dir="img", img_suffix=".jpg"))\n')
    (tmp_path / 'thr.json').write_text(json.dumps({'threshold': 0.5}))
    out = str(tmp_path / 'out')
    code, stdout, stderr = run_tool('make_pseudo_labels', cfg, '--cams', d['cams'], '--out', out,
                                    '--method', 'threshold', '--bg-threshold-from',
                                    tmp_path / 'thr.json', '--workers', '1')
    assert code == 1, stderr
    assert 'missing_cam: 1' in stdout and 'im_1' in stdout
    assert sorted(os.listdir(out)) == ['im_0.png', 'im_2.png', 'pseudo_labels.json']
    np.testing.assert_array_equal(load_label_png(osp.join(out, 'im_2.png')), expected['im_2'])
    code, _, stderr = run_tool('make_pseudo_labels', cfg, '--cams', d['cams'], '--out', out,
                               '--method', 'sam')
    assert code == 2 and 'has no model.cpm block' in stderr


def test_cli_se_merge_reads_the_se_map_cache_of_the_config(tmp_path, run_tool):
    names, d, _ = _make_dataset(str(tmp_path), n=2)
    (tmp_path / 'list.txt').write_text('\n'.join(names) + '\n')
    cfg = tmp_path / 'cfg.py'
    base = (f'train_dataloader = dict(dataset=dict(data_root={str(tmp_path)!r}, '
            f'ann_file="list.txt", img_dir="img", img_suffix=".jpg"))\n')
    cfg.write_text(base.replace('img_suffix=".jpg"', f'img_suffix=".jpg", se_map_dir={d["se"]!r}'))
    out = str(tmp_path / 'out')
    code, _, stderr = run_tool('make_pseudo_labels', cfg, '--cams', d['cams'], '--out', out,
                               '--method', 'se_merge', '--bg-threshold', '0.5', '--workers', '1')
    assert code == 0, stderr
    for name in names:
        keys, cams = load_cams(osp.join(d['cams'], name + '.npz'))
        se = cv2.imread(osp.join(d['se'], name + '.png'), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(load_label_png(osp.join(out, name + '.png')),
                                      se_merge_labels(cams, keys, se, 0.5)[0])
    cfg.write_text(base)                                   # no se_map_dir, no --se-dir
    code, _, stderr = run_tool('make_pseudo_labels', cfg, '--cams', d['cams'], '--out',
                               tmp_path / 'o2', '--method', 'se_merge', '--bg-threshold', '0.5')
    assert code == 2 and '--se-dir' in stderr


def test_visualize_writes_one_grid_per_image(tmp_path, run_tool):
    names, d, expected = _make_dataset(str(tmp_path), n=2)
    out = str(tmp_path / 'pl')
    make_pseudo_labels(d['cams'], out, names, 'threshold', bg_threshold=0.5, progress=False)
    code, _, stderr = run_tool(
        'analysis_tools/visualize', '--img-dir', d['img'], '--cams', d['cams'], '--labels', out,
        '--gt', out, '--names', *names, 'missing', '--height', '48', '--out', tmp_path / 'vis',
        '--stack', tmp_path / 'all.png', '--classes', 'disc', 'box', 'triangle')
    assert code == 1 and 'missing' in stderr      # one name without an image
    assert sorted(os.listdir(tmp_path / 'vis')) == [n + '.png' for n in names]
    # --stack: both rows (same width here) with a 4-pixel white gap between them.
    rows = [np.asarray(Image.open(tmp_path / 'vis' / f'{n}.png').convert('RGB'))
            for n in names]
    stacked = np.asarray(Image.open(tmp_path / 'all.png').convert('RGB'))
    assert stacked.shape == (48 * 2 + 4, rows[0].shape[1], 3)
    np.testing.assert_array_equal(stacked[:48], rows[0])
    np.testing.assert_array_equal(stacked[52:], rows[1])
    assert (stacked[48:52] == 255).all()
    grid = np.asarray(Image.open(tmp_path / 'vis' / 'im_0.png').convert('RGB'))
    # 5 panels of 48 x 64 (image, 2 CAMs, pseudo-label, "GT") with 4-pixel gaps.
    assert grid.shape == (48, 5 * 64 + 4 * 4, 3)
    # Label panels are resized with nearest neighbour (x4 here): exact palette colours
    # below the caption box (top 16 rows).
    last = grid[:, -64:][::4, ::4]
    np.testing.assert_array_equal(last[5:], VOC_PALETTE[expected['im_0'][5:]])


def test_visualize_several_captioned_label_panels(tmp_path, run_tool):
    names, d, expected = _make_dataset(str(tmp_path), n=1)
    out, blank = str(tmp_path / 'pl'), tmp_path / 'blank'
    make_pseudo_labels(d['cams'], out, names, 'threshold', bg_threshold=0.5, progress=False)
    blank.mkdir()
    save_label_png(str(blank / f'{names[0]}.png'), np.zeros_like(expected[names[0]]))
    code, _, stderr = run_tool(
        'analysis_tools/visualize', '--img-dir', d['img'], '--labels', f'threshold={out}',
        f'all background={blank}', '--names', names[0], '--height', '48', '--out',
        tmp_path / 'vis')
    assert code == 0, stderr
    grid = np.asarray(Image.open(tmp_path / 'vis' / f'{names[0]}.png').convert('RGB'))
    # image + the two label panels in the order given, 48 x 64 each, 4-pixel gaps
    assert grid.shape == (48, 3 * 64 + 2 * 4, 3)
    first, second = grid[:, 68:132][::4, ::4], grid[:, 136:][::4, ::4]
    np.testing.assert_array_equal(first[5:], VOC_PALETTE[expected[names[0]][5:]])
    assert (second[5:] == VOC_PALETTE[0]).all()


def test_job_refuses_labels_from_other_cams(tmp_path):
    names, d, _ = _make_dataset(str(tmp_path / 'a'), n=2)
    _, d2, _ = _make_dataset(str(tmp_path / 'b'), n=2, seed=1)
    out = str(tmp_path / 'pl')
    kw = dict(bg_threshold=0.5, progress=False)
    assert make_pseudo_labels(d['cams'], out, names, 'threshold', **kw).ok
    with pytest.raises(ValueError, match='key.cams: folder has'):
        make_pseudo_labels(d2['cams'], out, names, 'threshold', **kw)
    # CAM folders with a manifest are identified by its id, wherever they are
    prepare_cam_dir(d['cams'], cam_manifest('0' * 64, [1.0], True), overwrite=True)
    out2 = str(tmp_path / 'pl2')
    assert make_pseudo_labels(d['cams'], out2, names, 'threshold', **kw).ok
    with open(osp.join(out2, 'pseudo_labels.json')) as f:
        assert json.load(f)['key']['cams'] == manifest_id(cam_manifest('0' * 64, [1.0], True))
    assert make_pseudo_labels(d['cams'], out2, names, 'threshold', **kw).skipped == names
    with pytest.raises(ValueError, match='key.cams: folder has'):
        make_pseudo_labels(d2['cams'], out2, names, 'threshold', **kw)


def test_workers_fork_safely_after_opencv_ran_threads(tmp_path):
    """A parent whose OpenCV thread pool is live must still fork working workers (it hung in
    ``pthread_cond_destroy`` when each forked worker reset OpenCV's inherited pool)."""
    script = textwrap.dedent(f'''
        import sys, cv2, numpy as np
        sys.path.insert(0, {osp.dirname(__file__)!r})
        from test_pseudo_label_job import _make_dataset
        from s2c.pseudo_labels.job import make_pseudo_labels
        cv2.setNumThreads(2)
        for _ in range(3):
            cv2.GaussianBlur(np.random.rand(2000, 2000).astype(np.float32), (31, 31), 5)
        names, d, _ = _make_dataset({str(tmp_path)!r}, n=4)
        s = make_pseudo_labels(d['cams'], {str(tmp_path / 'out')!r}, names, 'se_merge',
                               se_dir=d['se'], img_dir=d['img'], bg_threshold=0.5, workers=2,
                               progress=False)
        assert s.ok and len(s.done) == 4, s
        assert cv2.getNumThreads() == 2  # the caller's setting is restored
    ''')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_se_merge_labels_of_two_se_caches_never_mix(tmp_path):
    names, d, _ = _make_dataset(str(tmp_path), n=3)
    other = str(tmp_path / 'se_other')
    shutil.copytree(d['se'], other)
    out = str(tmp_path / 'pl')
    kw = dict(img_dir=d['img'], bg_threshold=0.5, progress=False)
    assert make_pseudo_labels(d['cams'], out, names[:2], 'se_merge', se_dir=d['se'], **kw).ok
    key = json.load(open(osp.join(out, 'pseudo_labels.json')))['key']
    assert key['se_maps'] == f'folder {osp.abspath(d["se"])}'
    with pytest.raises(ManifestMismatchError, match='se_maps'):
        make_pseudo_labels(d['cams'], out, names, 'se_merge', se_dir=other, **kw)
    again = make_pseudo_labels(d['cams'], out, names, 'se_merge', se_dir=d['se'], **kw)
    assert again.ok and again.skipped == names[:2] and again.done == names[2:]
    # threshold does not read SE maps: its manifest has no se_maps entry
    make_pseudo_labels(d['cams'], str(tmp_path / 'thr'), names, 'threshold', se_dir=other, **kw)
    assert 'se_maps' not in json.load(open(tmp_path / 'thr' / 'pseudo_labels.json'))['key']


def test_a_run_where_every_image_fails_does_not_stamp_the_folder(tmp_path):
    names, d, _ = _make_dataset(str(tmp_path), n=2)
    out = tmp_path / 'pl'
    bad = make_pseudo_labels(d['cams'], str(out), names, 'se_merge', se_dir=str(tmp_path / 'x'),
                             img_dir=d['img'], bg_threshold=0.5, progress=False)
    assert not bad.ok and not bad.done and not (out / 'pseudo_labels.json').exists()
    good = make_pseudo_labels(d['cams'], str(out), names, 'se_merge', se_dir=d['se'],
                              img_dir=d['img'], bg_threshold=0.5, progress=False)
    assert good.ok and sorted(good.done) == names  # not refused as "other settings"


def test_visualize_with_data_root(demo_root, tmp_path, run_tool):
    code, out, err = run_tool('analysis_tools/visualize', '--data-root', demo_root, '--split',
                              'val', '--max', 2, '--height', 48, '--out', tmp_path / 'vis')
    assert code == 0, err
    names = read_split(osp.join(demo_root, 'ImageSets/Segmentation/val.txt'))[:2]
    assert sorted(os.listdir(tmp_path / 'vis')) == sorted(n + '.png' for n in names)
    code, _, err = run_tool('analysis_tools/visualize', '--names', 'x', '--out', tmp_path / 'v')
    assert code == 2 and 'give --img-dir' in err
