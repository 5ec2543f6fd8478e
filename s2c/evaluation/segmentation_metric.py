"""mmseg's IoU metric with every class's IoU in its result and palette PNG predictions."""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS as SEG_METRICS

from s2c.utils.label_io import save_label_png


@SEG_METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """:class:`mmseg.evaluation.IoUMetric` (same accumulation, same logged per-class table)
    whose result also holds ``IoU.<class name>`` for every class (percent, 2 decimals), so
    several test runs can be put in one table.

    Args:
        pred_dir: When given, each prediction is written to ``<pred_dir>/<image stem>.png``
            as a VOC-palette PNG (class indices; the same files ``eval_seg.py`` reads).
        **kwargs: :class:`~mmseg.evaluation.IoUMetric` arguments (``iou_metrics``,
            ``ignore_index``...); its ``output_dir`` (plain grayscale PNGs) still works.

    IoU of class ``c`` = ``sum_images |pred = c and gt = c| / sum_images |pred = c or gt = c|``
    over pixels whose ground truth is not ``ignore_index``; NaN (reported as such) for a
    class absent from both.
    """

    def __init__(self, pred_dir: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pred_dir = pred_dir
        if pred_dir:
            os.makedirs(pred_dir, exist_ok=True)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Accumulate as mmseg does; write the palette PNGs when ``pred_dir`` is set."""
        super().process(data_batch, data_samples)
        if not self.pred_dir:
            return
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze().cpu().numpy().astype(np.uint8)
            stem = osp.splitext(osp.basename(sample['img_path']))[0]
            save_label_png(osp.join(self.pred_dir, stem + '.png'), pred)

    def compute_metrics(self, results: list) -> dict[str, float]:
        """mmseg's summary (``aAcc``, ``mIoU``, ``mAcc``...) plus ``IoU.<class>``."""
        metrics = super().compute_metrics(results)
        if self.format_only or not results:
            return metrics
        intersect = sum(r[0] for r in results).cpu().numpy().astype(np.float64)
        union = sum(r[1] for r in results).cpu().numpy().astype(np.float64)
        with np.errstate(invalid='ignore', divide='ignore'):
            iou = intersect / union
        for name, value in zip(self.dataset_meta['classes'], iou):
            metrics[f'IoU.{name}'] = float(np.round(value * 100, 2))
        return metrics
