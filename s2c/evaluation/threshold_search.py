"""Background-threshold search for CAM evaluation.

A CAM becomes a label map by giving the background a constant score ``t``
and taking the argmax over ``[t, CAM_1, ..., CAM_K]`` (ties go to background).
The official S2C ``evaluation.py`` evaluates ``t = 0.00, 0.01, ...`` up to
0.49 and keeps the best mIoU (it stops at the first decrease; we evaluate
every threshold and keep the best, which is never worse).
"""
from __future__ import annotations

import numpy as np
import torch

from .iou import confusion_matrix, scores_from_confusion


def default_thresholds(start: float = 0.0, stop: float = 0.50, step: float = 0.01) -> np.ndarray:
    """Thresholds ``start, start+step, ..., stop`` (inclusive), rounded to 1e-6."""
    n = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(n), 6)


def cam_to_label(cams: np.ndarray | torch.Tensor, keys: np.ndarray | list[int],
                 bg_threshold: float) -> np.ndarray:
    """Label map from normalised CAMs and a constant background score.

    Args:
        cams: ``(K, H, W)`` CAMs in [0, 1] of the image's K present classes.
        keys: ``(K,)`` 0-based foreground class indices of those CAMs.
        bg_threshold: Background score ``t``.

    Returns:
        np.ndarray: ``(H, W)`` int64 labels: 0 background, ``keys[k] + 1`` otherwise.
    """
    cams = cams.float().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)
    keys = np.asarray(keys, dtype=np.int64)
    if cams.shape[0] == 0:
        return np.zeros(cams.shape[1:], dtype=np.int64)
    best = cams.max(axis=0)
    arg = cams.argmax(axis=0)
    return np.where(best > bg_threshold, keys[arg] + 1, 0)


class ThresholdSearch:
    """Accumulate one confusion matrix per background threshold.

    Args:
        num_classes: Number of classes ``N`` including background (VOC: 21).
        thresholds: Background scores to try; default 0.00, 0.01, ..., 0.50.
        ignore_index: Ground-truth value to ignore.
    """

    def __init__(self, num_classes: int, thresholds: np.ndarray | None = None,
                 ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.thresholds = default_thresholds() if thresholds is None else np.asarray(thresholds)
        self.ignore_index = ignore_index
        self.cms = np.zeros((len(self.thresholds), num_classes, num_classes), dtype=np.int64)

    def update(self, cams: np.ndarray | torch.Tensor, keys: np.ndarray | list[int],
               gt: np.ndarray) -> None:
        """Add one image.

        Args:
            cams: ``(K, H, W)`` CAMs in [0, 1] at the ground truth's resolution.
            keys: ``(K,)`` 0-based foreground class indices.
            gt: ``(H, W)`` ground truth (0 background, 1..N-1, ``ignore_index``).
        """
        cams = cams.float().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)
        keys = np.asarray(keys, dtype=np.int64)
        if cams.shape[1:] != gt.shape:
            raise ValueError(f'CAM size {cams.shape[1:]} differs from ground truth {gt.shape}')
        if cams.shape[0] == 0:
            best = np.zeros(gt.shape, np.float32)
            fg = np.zeros(gt.shape, np.int64)
        else:
            best = cams.max(axis=0)
            fg = keys[cams.argmax(axis=0)] + 1
        for i, t in enumerate(self.thresholds):
            pred = np.where(best > t, fg, 0)
            self.cms[i] += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)

    def merge(self, other: ThresholdSearch) -> None:
        """Add the counts of another search over the same thresholds."""
        if not np.allclose(self.thresholds, other.thresholds):
            raise ValueError('cannot merge searches over different thresholds')
        self.cms += other.cms

    def result(self) -> dict:
        """Best threshold and its scores.

        Returns:
            dict: ``threshold`` (best t), ``scores`` (see
            :func:`~s2c.evaluation.iou.scores_from_confusion`) at that t,
            ``miou_per_threshold`` (``(T,)`` array) and ``confusion`` at the best t.
        """
        mious = np.array([scores_from_confusion(cm)['miou'] for cm in self.cms])
        finite = np.where(np.isfinite(mious), mious, -1.0)
        best = int(np.argmax(finite))
        return dict(threshold=float(self.thresholds[best]),
                    scores=scores_from_confusion(self.cms[best]),
                    miou_per_threshold=mious, confusion=self.cms[best])
