"""Confusion-matrix segmentation scores (IoU, precision, recall).

Conventions follow mmsegmentation's ``IoUMetric``: pixels whose ground truth
equals ``ignore_index`` are left out; a class that appears neither in the
ground truth nor in the prediction has IoU ``nan`` and is skipped by the mean
(``nanmean``). The official S2C ``evaluation.py`` instead counts such a class
as 0, which only matters on tiny subsets.
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor,
                     num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Accumulate a confusion matrix.

    Args:
        pred: ``(H, W)`` (or any shape) predicted class indices.
        gt: Ground truth of the same shape; ``ignore_index`` pixels are skipped.
        num_classes: Number of classes ``N`` including background.
        ignore_index: Ground-truth value to ignore.

    Returns:
        np.ndarray: ``(N, N)`` int64 matrix, rows = ground truth, columns = prediction.

    Raises:
        ValueError: When shapes differ, or a non-ignored ground-truth or a
            prediction value lies outside ``[0, N)``.
    """
    pred = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    gt = gt.cpu().numpy() if isinstance(gt, torch.Tensor) else np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction shape {pred.shape} differs from ground truth {gt.shape}')
    gt = gt.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    keep = gt != ignore_index
    gt, pred = gt[keep], pred[keep]
    if gt.size and (gt.min() < 0 or gt.max() >= num_classes):
        raise ValueError(f'ground-truth values outside [0, {num_classes}) and != {ignore_index}: '
                         f'{np.unique(gt[(gt < 0) | (gt >= num_classes)])[:10].tolist()}')
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f'predicted values outside [0, {num_classes}): '
                         f'{np.unique(pred[(pred < 0) | (pred >= num_classes)])[:10].tolist()}')
    return np.bincount(gt * num_classes + pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-class IoU, precision and recall from a confusion matrix.

    ``IoU_c = TP / (TP + FP + FN)``, ``precision_c = TP / (TP + FP)``,
    ``recall_c = TP / (TP + FN)``; undefined ratios are ``nan``.

    Args:
        cm: ``(N, N)`` confusion matrix (rows ground truth, columns prediction).

    Returns:
        dict: ``iou``, ``precision``, ``recall`` (``(N,)`` float64 arrays) and
        ``miou``, ``mprecision``, ``mrecall``, ``acc`` (floats in [0, 1], nan-means).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    gt_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = tp / (gt_count + pred_count - tp)
        precision = tp / pred_count
        recall = tp / gt_count
        acc = tp.sum() / cm.sum() if cm.sum() > 0 else float('nan')

    def _nanmean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) if np.isfinite(x).any() else float('nan')

    return dict(iou=iou, precision=precision, recall=recall, miou=_nanmean(iou),
                mprecision=_nanmean(precision), mrecall=_nanmean(recall), acc=float(acc))


def format_iou_table(scores: dict, class_names: list[str] | tuple[str, ...]) -> str:
    """A plain-text per-class table (IoU / precision / recall in percent).

    Args:
        scores: Output of :func:`scores_from_confusion`.
        class_names: ``N`` names, background first.

    Returns:
        str: Multi-line table ending with the mean row.
    """
    lines = [f'{"class":<14}{"IoU":>8}{"Prec":>8}{"Rec":>8}', '-' * 38]
    for i, name in enumerate(class_names):
        lines.append(f'{name:<14}{100 * scores["iou"][i]:>8.2f}'
                     f'{100 * scores["precision"][i]:>8.2f}{100 * scores["recall"][i]:>8.2f}')
    lines.append('-' * 38)
    lines.append(f'{"mean":<14}{100 * scores["miou"]:>8.2f}'
                 f'{100 * scores["mprecision"]:>8.2f}{100 * scores["mrecall"]:>8.2f}')
    return '\n'.join(lines)
