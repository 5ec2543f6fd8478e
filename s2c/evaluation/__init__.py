"""Evaluation: confusion-matrix scores, the background-threshold search, MMEngine metrics,
scoring of CAM folders and label folders, label-free baselines."""
from .baselines import trivial_baselines
from .cam_eval import evaluate_cam_dir
from .folder_eval import SegEvalResult, evaluate_folder, save_eval_json
from .iou import confusion_matrix, format_iou_table, scores_from_confusion
from .metrics import CAMThresholdMetric
from .threshold_search import ThresholdSearch, cam_to_label, default_thresholds

__all__ = [
    'trivial_baselines', 'evaluate_cam_dir', 'SegEvalResult', 'evaluate_folder',
    'save_eval_json', 'confusion_matrix', 'format_iou_table', 'scores_from_confusion',
    'CAMThresholdMetric', 'ThresholdSearch', 'cam_to_label', 'default_thresholds'
]
