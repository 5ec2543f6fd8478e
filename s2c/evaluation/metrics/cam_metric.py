"""Validation metric: CAM mIoU with a background-threshold search."""
from __future__ import annotations

from collections.abc import Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from s2c.registry import METRICS

from ..iou import format_iou_table
from ..threshold_search import ThresholdSearch, default_thresholds


@METRICS.register_module()
class CAMThresholdMetric(BaseMetric):
    """mIoU of CAM label maps at the best constant background threshold.

    For every threshold ``t`` in ``thresholds`` (default 0.00, 0.01, ..., 0.50)
    the label map is ``argmax([t, CAM_1..CAM_K])``; the metric reports the best
    mIoU (percent), its threshold, mean precision/recall, and logs the per-class
    IoU table. Each process accumulates confusion matrices locally, so memory
    does not grow with the number of images; the per-rank accumulators are
    merged in :meth:`compute_metrics`.

    Args:
        num_classes: Classes including background (VOC: 21).
        thresholds: ``(start, stop, step)`` of the search.
        class_names: Foreground names (default from the dataset meta).
        ignore_index: Ground-truth value to ignore.
    """

    default_prefix = 'cam'

    def __init__(self, num_classes: int = 21,
                 thresholds: Sequence[float] = (0.0, 0.50, 0.01),
                 class_names: Sequence[str] | None = None, ignore_index: int = 255,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes
        self.thresholds = default_thresholds(*thresholds)
        self.class_names = class_names
        self.ignore_index = ignore_index

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Accumulate the outputs of :meth:`CAMClassifier.predict` (need ``gt_seg``).

        A sample whose ground truth is invalid (values outside ``0..C-1`` and
        ``ignore_index``, or a size mismatch) is logged by name and left out;
        training goes on.

        Raises:
            KeyError: When samples carry no ``gt_seg`` (validation set-up error).
        """
        if not self.results:  # emptied by BaseMetric.evaluate after every round
            self.results.append(ThresholdSearch(self.num_classes, self.thresholds,
                                                self.ignore_index))
        search = self.results[0]
        for sample in data_samples:
            if 'gt_seg' not in sample:
                raise KeyError(f'sample {sample.get("name")} has no gt_seg; the validation '
                               "dataset needs seg_dir='SegmentationClass' and LoadAnnotations")
            try:
                search.update(sample['cams'], sample['keys'].numpy(), sample['gt_seg'])
            except ValueError as e:  # e.g. a GT value outside 0..C-1, 255: skip, don't crash
                name = sample.get('name')
                MMLogger.get_current_instance().warning(
                    f'validation image {name} left out of the CAM mIoU: {e}')
                # (the summary count may miss some names across ranks: MMEngine zips the
                # per-rank lists; every rank has logged its own names above)
                self.results.append(dict(skipped=name))

    def compute_metrics(self, results: list) -> dict:
        """Merge per-rank accumulators and pick the best threshold."""
        total = ThresholdSearch(self.num_classes, self.thresholds, self.ignore_index)
        skipped = []
        for part in results:
            if isinstance(part, dict):
                skipped.append(part['skipped'])
            else:
                total.merge(part)
        best = total.result()
        scores = best['scores']
        names = self.class_names or self.dataset_meta.get('classes', ())
        names = ['background'] + list(names)
        if len(names) != self.num_classes:
            names = [str(i) for i in range(self.num_classes)]
        logger = MMLogger.get_current_instance()
        logger.info(f'CAM mIoU per class at background threshold {best["threshold"]:.2f}:\n'
                    + format_iou_table(scores, names))
        if skipped:
            logger.warning(f'{len(skipped)} validation image(s) left out of the CAM mIoU (bad '
                           f'ground truth, see the warnings above): {skipped[:5]}')
        return dict(mIoU=round(100 * scores['miou'], 2), bg_threshold=best['threshold'],
                    mPrecision=round(100 * scores['mprecision'], 2),
                    mRecall=round(100 * scores['mrecall'], 2))
