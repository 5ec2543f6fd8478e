"""Score a folder of label PNGs (predictions or pseudo-labels) against ground truth.

Counting follows mmsegmentation's ``IoUMetric`` exactly (it is tested against
it to 1e-6): ground-truth pixels equal to ``ignore_index`` are left out;
prediction pixels equal to ``ignore_index`` (pseudo-labels marked "ignore")
count for no class, so they add to the ground-truth area of their class (a
miss) but to no predicted area; a class absent from both ground truth and
prediction has IoU ``nan`` and is skipped by the means.

Problems with single images (missing or unreadable files, values outside
``{0..N-1, ignore_index}``, size mismatch) are collected in a
:class:`FailureLog`; such images are left out and the rest is scored.
"""
from __future__ import annotations

import json
import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from s2c.datasets.class_names import VOC_CLASSES
from s2c.utils import atomic_write, load_label_png
from s2c.utils.job_summary import FailureLog

from .iou import confusion_matrix, format_iou_table, scores_from_confusion


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``background`` + VOC names for 21 classes, ``background, class_1, ...`` otherwise."""
    if num_classes == len(VOC_CLASSES) + 1:
        return ('background',) + tuple(VOC_CLASSES)
    return ('background',) + tuple(f'class_{i}' for i in range(1, num_classes))


@dataclass
class SegEvalResult:
    """Scores of a prediction folder.

    Attributes:
        confusion: ``(N, N)`` int64 counts, rows ground truth, columns
            prediction, over pixels whose prediction is not ``ignore_index``.
        unpredicted: ``(N,)`` int64 ground-truth pixels per class whose
            prediction is ``ignore_index`` (misses).
        scores: ``iou``/``precision``/``recall`` ``(N,)`` arrays and
            ``miou``/``mprecision``/``mrecall``/``acc`` floats in [0, 1].
        class_names: ``N`` names, background first.
        num_images: Images scored.
        failures: Images left out and why.
    """

    confusion: np.ndarray
    unpredicted: np.ndarray
    scores: dict
    class_names: tuple[str, ...]
    num_images: int
    failures: FailureLog

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return self.failures.count == 0

    def table(self) -> str:
        """Per-class IoU / precision / recall table (percent)."""
        return format_iou_table(self.scores, self.class_names)

    def to_dict(self) -> dict:
        """JSON-ready dict (``nan`` -> ``None``; fractions in [0, 1])."""

        def f(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        per_class = {name: dict(iou=f(self.scores['iou'][i]),
                                precision=f(self.scores['precision'][i]),
                                recall=f(self.scores['recall'][i]))
                     for i, name in enumerate(self.class_names)}
        return dict(miou=f(self.scores['miou']), mprecision=f(self.scores['mprecision']),
                    mrecall=f(self.scores['mrecall']), acc=f(self.scores['acc']),
                    num_images=self.num_images, per_class=per_class,
                    confusion=self.confusion.tolist(), unpredicted=self.unpredicted.tolist(),
                    failures=self.failures.to_dict())


def scores_with_unpredicted(cm: np.ndarray, unpredicted: np.ndarray) -> dict:
    """Scores from a confusion matrix plus per-class unpredicted pixel counts.

    The unpredicted pixels enter as an extra prediction column that belongs to
    no class (mmseg's ``IoUMetric`` counts them in the ground-truth area only).

    Args:
        cm: ``(N, N)`` confusion matrix (rows ground truth).
        unpredicted: ``(N,)`` ground-truth pixels per class predicted as ignore.

    Returns:
        dict: As :func:`~s2c.evaluation.iou.scores_from_confusion` for the N classes.
    """
    n = cm.shape[0]
    ext = np.zeros((n + 1, n + 1), dtype=np.int64)
    ext[:n, :n] = cm
    ext[:n, n] = unpredicted
    s = scores_from_confusion(ext)
    out = {k: s[k][:n] for k in ('iou', 'precision', 'recall')}

    def _nanmean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) if np.isfinite(x).any() else float('nan')

    out.update(miou=_nanmean(out['iou']), mprecision=_nanmean(out['precision']),
               mrecall=_nanmean(out['recall']), acc=s['acc'])
    return out


def _read(path: str, what: str, failures: FailureLog, name: str) -> np.ndarray | None:
    if not osp.isfile(path):
        failures.add(f'missing_{what}', name, f'{path} not found')
        return None
    try:
        return load_label_png(path)
    except (ValueError, OSError) as e:
        failures.add(f'bad_{what}', name, str(e))
        return None


def evaluate_folder(pred_dir: str, gt_dir: str, names: Sequence[str], num_classes: int = 21, *,
                    ignore_index: int = 255, pred_suffix: str = '.png', gt_suffix: str = '.png',
                    class_names: Sequence[str] | None = None,
                    progress: bool = True) -> SegEvalResult:
    """Confusion-matrix mIoU of ``<pred_dir>/<name>.png`` against ``<gt_dir>/<name>.png``.

    Both are label PNGs (palette/grayscale indices; RGB colour PNGs are mapped
    through the VOC palette by :func:`s2c.utils.load_label_png`).

    Args:
        pred_dir: Folder of predictions (values ``0..N-1`` or ``ignore_index``).
        gt_dir: Folder of ground truth (values ``0..N-1`` or ``ignore_index``).
        names: Image names to score (e.g. from :func:`s2c.datasets.read_split`).
        num_classes: ``N`` including background (VOC 21).
        ignore_index: Ignore value in ground truth and prediction.
        pred_suffix: File suffix of predictions.
        gt_suffix: File suffix of ground truth.
        class_names: ``N`` names (default :func:`default_class_names`).
        progress: Show a tqdm bar.

    Returns:
        SegEvalResult: Scores over the images without problems, plus the failures
        (reasons ``missing_prediction``, ``missing_gt``, ``bad_prediction``,
        ``bad_gt``, ``bad_prediction_values``, ``bad_gt_values``, ``size_mismatch``).

    Raises:
        ValueError: When ``class_names`` does not have ``num_classes`` entries.
    """
    class_names = tuple(class_names) if class_names is not None else \
        default_class_names(num_classes)
    if len(class_names) != num_classes:
        raise ValueError(f'{len(class_names)} class names for {num_classes} classes')
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    unpredicted = np.zeros(num_classes, dtype=np.int64)
    failures = FailureLog()
    scored = 0
    for name in tqdm(names, desc='eval', unit='img', disable=not progress):
        gt = _read(osp.join(gt_dir, name + gt_suffix), 'gt', failures, name)
        pred = _read(osp.join(pred_dir, name + pred_suffix), 'prediction', failures, name)
        if gt is None or pred is None:
            continue
        bad = False
        for arr, what in ((gt, 'gt'), (pred, 'prediction')):
            invalid = (arr >= num_classes) & (arr != ignore_index)
            if invalid.any():
                vals = np.unique(arr[invalid])[:10].tolist()
                failures.add(f'bad_{what}_values', name,
                             f'{int(invalid.sum())} pixels with values {vals} outside '
                             f'0..{num_classes - 1} and {ignore_index}')
                bad = True
        if gt.shape != pred.shape:
            failures.add('size_mismatch', name,
                         f'prediction {pred.shape} vs ground truth {gt.shape}')
            bad = True
        if bad:
            continue
        valid_pred = pred != ignore_index
        gt_masked = np.where(valid_pred, gt, ignore_index)
        cm += confusion_matrix(np.where(valid_pred, pred, 0), gt_masked, num_classes,
                               ignore_index)
        missed = gt[~valid_pred]
        missed = missed[missed != ignore_index]
        unpredicted += np.bincount(missed.astype(np.int64), minlength=num_classes)
        scored += 1
    return SegEvalResult(confusion=cm, unpredicted=unpredicted,
                         scores=scores_with_unpredicted(cm, unpredicted), class_names=class_names,
                         num_images=scored, failures=failures)


def save_eval_json(result: SegEvalResult, path: str, **extra: object) -> None:
    """Write :meth:`SegEvalResult.to_dict` (plus ``extra`` keys) as JSON, atomically."""
    payload = result.to_dict()
    payload.update(extra)
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        json.dump(payload, f, indent=2)
