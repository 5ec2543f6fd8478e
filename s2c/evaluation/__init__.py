"""Segmentation scores, threshold search and MMEngine metrics."""
from .cam_metric import CAMThresholdMetric, trivial_baselines
from .iou import confusion_matrix, format_iou_table, scores_from_confusion
from .threshold_search import ThresholdSearch, cam_to_label, default_thresholds

__all__ = [
    'CAMThresholdMetric', 'trivial_baselines', 'confusion_matrix', 'format_iou_table',
    'scores_from_confusion', 'ThresholdSearch', 'cam_to_label', 'default_thresholds'
]
