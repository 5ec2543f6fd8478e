"""Pseudo-labels: the rules (threshold, dense CRF, SE-map merging), the methods registered
in ``LABEL_METHODS`` (those three and SAM refinement) and the resumable job."""
from .job import build_label_method, label_manifest, make_pseudo_labels, read_bg_threshold
from .methods import CRFLabels, LabelInputs, LabelMethod, SEMergeLabels, ThresholdLabels
from .rules import apply_ignore, crf_labels, se_merge_labels, threshold_labels
from .sam_refine import SamRefineLabels, refine_labels

__all__ = [
    'build_label_method', 'label_manifest', 'make_pseudo_labels', 'read_bg_threshold',
    'CRFLabels', 'LabelInputs', 'LabelMethod', 'SEMergeLabels', 'ThresholdLabels',
    'apply_ignore', 'crf_labels', 'se_merge_labels', 'threshold_labels', 'SamRefineLabels',
    'refine_labels'
]
