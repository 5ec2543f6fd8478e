"""Confusion-matrix scores, threshold search and the CAM metric on hand-made examples."""
import numpy as np
import pytest
import torch

from s2c.evaluation import (
    CAMThresholdMetric,
    ThresholdSearch,
    cam_to_label,
    confusion_matrix,
    scores_from_confusion,
    trivial_baselines,
)


def test_iou_on_4x4_by_hand():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 255, 255],
                   [2, 2, 0, 0]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2],
                     [2, 2, 1, 1],
                     [0, 2, 0, 0]])
    cm = confusion_matrix(pred, gt, 3)
    # background: TP 5 (of 6 gt), predicted 6 -> IoU 5/7; class 1: TP 3 (of 4), pred 4 -> 3/5;
    # class 2: TP 3 (of 4), pred 4 -> 3/5 (ignored pixels count nowhere)
    s = scores_from_confusion(cm)
    np.testing.assert_allclose(s['iou'], [5 / 7, 3 / 5, 3 / 5])
    assert s['miou'] == pytest.approx((5 / 7 + 0.6 + 0.6) / 3)
    np.testing.assert_allclose(s['precision'], [5 / 6, 3 / 4, 3 / 4])
    np.testing.assert_allclose(s['recall'], [5 / 6, 3 / 4, 3 / 4])
    assert cm.sum() == 14


def test_absent_class_is_nan_and_skipped():
    s = scores_from_confusion(confusion_matrix(np.zeros((2, 2)), np.zeros((2, 2)), 3))
    assert s['iou'][0] == 1.0 and np.isnan(s['iou'][1]) and s['miou'] == 1.0
    with pytest.raises(ValueError, match='outside'):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_threshold_search_picks_the_separating_threshold():
    gt = np.array([[0, 0, 1, 1]])
    cams = np.array([[[0.10, 0.30, 0.35, 0.90]]])  # class 0 (label 1)
    search = ThresholdSearch(2, thresholds=[0.0, 0.2, 0.32, 0.5])
    search.update(cams, [0], gt)
    best = search.result()
    assert best['threshold'] == pytest.approx(0.32)
    assert best['scores']['miou'] == 1.0
    np.testing.assert_allclose(best['miou_per_threshold'], [0.5 * (0 + 0.5), (0.5 + 2 / 3) / 2,
                                                            1.0, (2 / 3 + 0.5) / 2])
    # ties go to background: value == t is background
    assert cam_to_label(cams, [0], 0.35).tolist() == [[0, 0, 0, 1]]


def test_cam_metric_merges_and_reports():
    metric = CAMThresholdMetric(num_classes=3, thresholds=(0.0, 0.5, 0.1),
                                class_names=('a', 'b'))
    gt = np.array([[0, 1], [2, 2]], np.uint8)
    cams = torch.tensor([[[0.0, 0.9], [0.1, 0.2]], [[0.0, 0.1], [0.8, 0.7]]])
    metric.process(None, [dict(name='x', keys=torch.tensor([0, 1]), cams=cams, gt_seg=gt)])
    out = metric.evaluate(1)
    assert out['cam/mIoU'] == 100.0 and out['cam/bg_threshold'] == pytest.approx(0.0)
    # a second round starts from scratch
    metric.process(None, [dict(name='x', keys=torch.tensor([0, 1]), cams=cams * 0, gt_seg=gt)])
    assert metric.evaluate(1)['cam/mIoU'] == pytest.approx(100 / 12, abs=0.01)


def test_cam_metric_leaves_out_bad_ground_truth():
    metric = CAMThresholdMetric(num_classes=3, thresholds=(0.0, 0.5, 0.1),
                                class_names=('a', 'b'))
    gt = np.array([[0, 1], [2, 2]], np.uint8)
    cams = torch.tensor([[[0.0, 0.9], [0.1, 0.2]], [[0.0, 0.1], [0.8, 0.7]]])
    bad = gt.copy()
    bad[0, 0] = 9                                   # not a class of a 3-class problem
    metric.process(None, [dict(name='good', keys=torch.tensor([0, 1]), cams=cams, gt_seg=gt),
                          dict(name='bad_gt', keys=torch.tensor([0, 1]), cams=cams, gt_seg=bad)])
    out = metric.evaluate(2)
    assert out['cam/mIoU'] == 100.0                 # only the good image is scored


def test_trivial_baselines():
    gt = np.array([[0, 0], [1, 1]])
    out = trivial_baselines([(gt, np.array([0]))], 2)
    assert out['all_background'] == pytest.approx(25.0)   # (2/4 + 0) / 2
    assert out['whole_image'] == pytest.approx(25.0)      # (0 + 2/4) / 2
