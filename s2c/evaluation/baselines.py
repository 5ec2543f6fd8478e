"""Label-free baselines: what a CAM must beat (the demo report prints them)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .iou import confusion_matrix, scores_from_confusion


def trivial_baselines(gt_and_labels: Sequence[tuple[np.ndarray, np.ndarray]],
                      num_classes: int) -> dict[str, float]:
    """mIoU (percent) of two label-free baselines, for the demo report.

    ``all_background``: every pixel background. ``whole_image``: every pixel
    gets the image's (first) labelled class — with several labels, the
    confusion is split evenly by assigning each labelled class to a
    horizontal band of equal height.

    Args:
        gt_and_labels: ``(gt (H, W), keys (K,))`` per image.
        num_classes: Classes including background.
    """
    cm_bg = np.zeros((num_classes, num_classes), np.int64)
    cm_whole = np.zeros_like(cm_bg)
    for gt, keys in gt_and_labels:
        cm_bg += confusion_matrix(np.zeros_like(gt), gt, num_classes)
        pred = np.zeros(gt.shape, np.int64)
        keys = np.asarray(keys)
        if keys.size:
            bands = np.array_split(np.arange(gt.shape[0]), keys.size)
            for k, rows in zip(keys, bands):
                pred[rows] = k + 1
        cm_whole += confusion_matrix(pred, gt, num_classes)
    return dict(all_background=100 * scores_from_confusion(cm_bg)['miou'],
                whole_image=100 * scores_from_confusion(cm_whole)['miou'])
