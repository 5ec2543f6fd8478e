"""CAM inference outputs, pseudo-label rules and the pseudo-label job."""
from . import sam_refine  # noqa: F401  (registers the 'sam' method)
from .cam_io import (
    CamFileError,
    CamManifestMismatch,
    cam_manifest,
    cam_path,
    load_cams,
    prepare_cam_dir,
    read_cam_manifest,
    save_cams,
)
from .crf import CRFParams, background_scores, crf_inference, crf_refine_cams
from .pseudo_label_job import (
    LABEL_METHODS,
    DatasetPaths,
    JobSummary,
    LabelInputs,
    LabelMethod,
    PseudoLabelOptions,
    dataset_paths,
    load_cls_labels,
    make_pseudo_labels,
    read_bg_threshold,
    register_label_method,
)
from .pseudo_labels import IGNORE_INDEX, apply_ignore, crf_labels, se_merge_labels, threshold_labels

__all__ = [
    'CamFileError', 'CamManifestMismatch', 'cam_manifest', 'cam_path', 'load_cams',
    'prepare_cam_dir', 'read_cam_manifest', 'save_cams',
    'CRFParams', 'background_scores', 'crf_inference', 'crf_refine_cams',
    'LABEL_METHODS', 'DatasetPaths', 'JobSummary', 'LabelInputs', 'LabelMethod',
    'PseudoLabelOptions', 'dataset_paths', 'load_cls_labels',
    'make_pseudo_labels', 'read_bg_threshold', 'register_label_method',
    'IGNORE_INDEX', 'apply_ignore', 'crf_labels', 'se_merge_labels', 'threshold_labels',
]
