"""Folder evaluation (s2c.evaluation.folder_eval, tools/analysis_tools/eval_seg.py)."""
from __future__ import annotations

import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from PIL import Image

from s2c.datasets import read_split
from s2c.evaluation.folder_eval import default_class_names, evaluate_folder
from s2c.utils import VOC_PALETTE, load_label_png, save_label_png

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _write(folder, name, arr):
    os.makedirs(folder, exist_ok=True)
    save_label_png(osp.join(folder, name + '.png'), np.asarray(arr))


def test_hand_computed_scores_and_ignore(tmp_path):
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 255, 1],
                     [2, 0, 2, 0]])
    _write(tmp_path / 'gt', 'a', gt)
    _write(tmp_path / 'pred', 'a', pred)
    r = evaluate_folder(str(tmp_path / 'pred'), str(tmp_path / 'gt'), ['a'], num_classes=3,
                        progress=False)
    # class 0: gt 4 px, pred 4 counted px (the 255 on gt 255 is dropped) -> TP 3, FP 1, FN 1
    # class 1: gt 4 px (one predicted 255 = miss), pred 4 -> TP 3, FP 1, FN 1
    # class 2: gt 2 px, pred 1 (the 2 on gt 255 is ignored) -> TP 1, FN 1
    np.testing.assert_allclose(r.scores['iou'], [3 / 5, 3 / 5, 1 / 2])
    np.testing.assert_allclose(r.scores['precision'], [3 / 4, 3 / 4, 1])
    np.testing.assert_allclose(r.scores['recall'], [3 / 4, 3 / 4, 1 / 2])
    assert r.scores['miou'] == pytest.approx((0.6 + 0.6 + 0.5) / 3)
    assert r.scores['acc'] == pytest.approx(7 / 10)
    assert r.unpredicted.tolist() == [0, 1, 0] and r.num_images == 1 and r.ok
    np.testing.assert_array_equal(r.confusion, [[3, 1, 0], [0, 3, 0], [1, 0, 1]])


def test_failures_are_named_and_rest_scored(tmp_path):
    gt_dir, pred_dir = str(tmp_path / 'gt'), str(tmp_path / 'pred')
    ok = np.array([[0, 1], [1, 1]])
    for n in ('a', 'b', 'c', 'd', 'e', 'f'):
        _write(gt_dir, n, ok)
        _write(pred_dir, n, ok)
    _write(gt_dir, 'b', np.array([[0, 30], [1, 1]]))              # GT value outside {0..20, 255}
    os.remove(osp.join(pred_dir, 'c.png'))                        # missing prediction
    _write(pred_dir, 'd', np.array([[0, 1, 1], [1, 1, 1]]))       # size mismatch
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)                                         # colour not in the palette
    Image.fromarray(rgb).save(osp.join(gt_dir, 'e.png'))
    _write(pred_dir, 'f', np.array([[0, 77], [1, 1]]))            # prediction out of range
    r = evaluate_folder(pred_dir, gt_dir, list('abcdefg'), progress=False)
    assert r.failures.counts() == {'bad_gt_values': 1, 'missing_prediction': 2,
                                   'size_mismatch': 1, 'bad_gt': 1,
                                   'bad_prediction_values': 1, 'missing_gt': 1}
    assert r.failures.count == 6                                  # 'g' has two reasons
    assert r.failures.names('bad_gt_values') == ['b']
    assert r.failures.names('missing_prediction') == ['c', 'g']
    assert r.failures.names('missing_gt') == ['g']
    assert r.failures.names('size_mismatch') == ['d']
    assert r.failures.names('bad_gt') == ['e']
    assert r.failures.names('bad_prediction_values') == ['f']
    assert r.num_images == 1 and not r.ok                         # only 'a' scored
    assert r.scores['iou'][0] == 1.0 and r.scores['iou'][1] == 1.0
    assert np.isnan(r.scores['iou'][2]) and r.scores['miou'] == 1.0
    assert "[30]" in r.failures.format()


def test_rgb_ground_truth_is_converted(tmp_path):
    gt = np.array([[0, 15, 15], [255, 3, 0]])
    Image.fromarray(VOC_PALETTE[gt]).save(tmp_path / 'x.png')     # colour PNG
    os.makedirs(tmp_path / 'pred')
    save_label_png(str(tmp_path / 'pred' / 'x.png'), gt)
    r = evaluate_folder(str(tmp_path / 'pred'), str(tmp_path), ['x'], progress=False)
    assert r.ok and r.scores['miou'] == 1.0 and r.confusion.sum() == 5


def _perturb(gt: np.ndarray, i: int, rng: np.random.Generator) -> np.ndarray:
    """Prediction = GT shifted / eroded / class-swapped, with some 255 and noise."""
    pred = gt.copy()
    pred[pred == 255] = 0
    kind = i % 4
    if kind == 0:
        pred = np.roll(pred, (7 + i, -5 - i), axis=(0, 1))
    elif kind == 1:
        fg = (pred > 0).astype(np.uint8)
        eroded = cv2.erode(fg, np.ones((9, 9), np.uint8))
        pred = np.where(eroded > 0, pred, 0)
    elif kind == 2:
        classes = [c for c in np.unique(pred) if c > 0]
        for c in classes:
            pred[pred == c] = (c % 20) + 1                        # swap to another class
    else:
        pred[rng.random(pred.shape) < 0.05] = 255                  # unpredicted pixels
    noise = rng.random(pred.shape) < 0.02
    pred[noise] = rng.integers(0, 19, int(noise.sum()))        # classes 19, 20 stay absent
    return pred.astype(np.uint8)


def test_agrees_with_mmseg_iou_metric(voc_samples_root, tmp_path):
    VOC = voc_samples_root
    torch = pytest.importorskip('torch')
    iou_metric = pytest.importorskip('mmseg.evaluation.metrics.iou_metric')
    names = read_split(osp.join(VOC, 'ImageSets/Segmentation/train.txt')) + \
        read_split(osp.join(VOC, 'ImageSets/Segmentation/val.txt'))
    rng = np.random.default_rng(0)
    gt_dir = osp.join(VOC, 'SegmentationClass')
    metric = iou_metric.IoUMetric(iou_metrics=['mIoU', 'mFscore'])
    metric.dataset_meta = dict(classes=default_class_names(21))
    for i, name in enumerate(names):
        gt = load_label_png(osp.join(gt_dir, name + '.png'))
        pred = _perturb(gt, i, rng)
        _write(tmp_path, name, pred)
        metric.process({}, [dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None].long()),
                                 gt_sem_seg=dict(data=torch.from_numpy(gt.copy())[None].long()))])
    ours = evaluate_folder(str(tmp_path), gt_dir, names, 21, progress=False)
    assert ours.ok and ours.num_images == len(names) == 14
    inter, union, pred_area, label_area = (sum(x) for x in zip(*metric.results))
    ref = metric.total_area_to_metrics(inter, union, pred_area, label_area,
                                       ['mIoU', 'mFscore'])
    np.testing.assert_allclose(ours.scores['iou'], ref['IoU'], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(ours.scores['recall'], ref['Recall'], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(ours.scores['precision'], ref['Precision'], atol=1e-6,
                               equal_nan=True)
    assert ours.scores['miou'] == pytest.approx(float(np.nanmean(ref['IoU'])), abs=1e-6)
    assert ours.scores['acc'] == pytest.approx(float(ref['aAcc']), abs=1e-6)
    assert np.isnan(ours.scores['iou']).sum() == np.isnan(ref['IoU']).sum() == 2  # 19, 20 absent
    summary = metric.compute_metrics(metric.results)                # mmseg's rounded numbers
    assert summary['mIoU'] == pytest.approx(round(100 * ours.scores['miou'], 2), abs=0.011)
    assert 0.3 < ours.scores['miou'] < 0.95                          # perturbations matter


def test_cli_json_and_exit_status(tmp_path, run_tool):
    gt_dir, pred_dir = str(tmp_path / 'gt'), str(tmp_path / 'pred')
    for n in ('a', 'b'):
        _write(gt_dir, n, np.array([[0, 1], [2, 2]]))
    _write(pred_dir, 'a', np.array([[0, 1], [2, 1]]))
    split = tmp_path / 'split.txt'
    split.write_text('a\nb\n')
    out = tmp_path / 'res.json'
    code, stdout, stderr = run_tool('analysis_tools/eval_seg', pred_dir, '--gt', gt_dir,
                                    '--split', split, '--num-classes', '3', '--json', out)
    assert code == 1
    assert 'missing_prediction: 1' in stderr and 'b:' in stderr
    assert 'mIoU 66.67 over 1/2 images' in stdout
    res = json.loads(out.read_text())
    assert res['miou'] == pytest.approx(2 / 3) and res['num_images'] == 1
    assert res['per_class']['class_1']['iou'] == pytest.approx(0.5)
    assert res['per_class']['class_2']['iou'] == pytest.approx(0.5)
    assert res['per_class']['background']['iou'] == 1.0
    assert res['failures']['missing_prediction']['count'] == 1
    assert 'b' in res['failures']['missing_prediction']['images']
    _write(pred_dir, 'b', np.array([[0, 1], [2, 2]]))
    code, _, stderr = run_tool('analysis_tools/eval_seg', pred_dir, '--gt', gt_dir, '--split',
                               split, '--num-classes', '3')
    assert code == 0, stderr


def test_cli_data_root_and_nothing_scored(demo_root, tmp_path, run_tool):
    """--data-root gives the ground truth and split names; a run that scores no image says so
    in one line and exits 1."""
    gt = osp.join(demo_root, 'SegmentationClass')
    code, out, err = run_tool('analysis_tools/eval_seg', gt, '--data-root', demo_root,
                              '--split', 'val', '--num-classes', 5)
    assert code == 0, err
    assert 'mIoU 100.00 over 4/4 images' in out
    code, _, err = run_tool('analysis_tools/eval_seg', tmp_path, '--data-root', demo_root,
                            '--split', 'val', '--num-classes', 5)
    errors = [line for line in err.splitlines() if line.startswith('error')]  # (+ tqdm bar)
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith('error: no image could be scored: all 4 failed '
                                '(missing_prediction 4); first: demo_00016:')
    code, _, err = run_tool('analysis_tools/eval_seg', tmp_path, '--split', 'val.txt')
    assert code == 2 and 'give --gt' in err
