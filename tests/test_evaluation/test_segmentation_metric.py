"""PerClassIoUMetric: mmseg's IoU accumulation, every class in the result, palette PNGs."""
from __future__ import annotations

import math
import os.path as osp

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from s2c.evaluation.iou import confusion_matrix, scores_from_confusion
from s2c.evaluation.segmentation_metric import PerClassIoUMetric
from s2c.utils import load_label_png

CLASSES = ('background', 'a', 'b', 'c')


def _sample(pred: np.ndarray, gt: np.ndarray, name: str) -> dict:
    s = SegDataSample(metainfo=dict(img_path=f'/data/JPEGImages/{name}.jpg'))
    s.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
    s.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None])
    return s.to_dict()


def test_per_class_iou_equals_the_confusion_matrix_and_pngs_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, (13, 17)) for _ in range(3)]  # class 'c' never predicted
    gts = [rng.integers(0, 3, (13, 17)) for _ in range(3)]
    gts[0][0, :5] = 255
    metric = PerClassIoUMetric(pred_dir=str(tmp_path / 'pred'), iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=CLASSES)
    for i, (p, g) in enumerate(zip(preds, gts)):
        metric.process({}, [_sample(p, g, f'im{i}')])
    result = metric.compute_metrics(metric.results)
    cm = sum(confusion_matrix(p, g, 4) for p, g in zip(preds, gts))
    iou = scores_from_confusion(cm)['iou']
    for name, value in zip(CLASSES[:3], iou[:3]):
        assert result[f'IoU.{name}'] == round(value * 100, 2)
    assert math.isnan(result['IoU.c'])  # absent from prediction and ground truth
    assert result['mIoU'] == round(float(np.nanmean(iou)) * 100, 2)
    for i, p in enumerate(preds):
        np.testing.assert_array_equal(load_label_png(osp.join(tmp_path, 'pred', f'im{i}.png')), p)
