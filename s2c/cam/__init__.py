"""Pure CAM functions: normalisation, multi-scale inference, peaks, dense CRF, CAM files."""
from .cam_io import (
    CamFileError,
    cam_manifest,
    cam_path,
    load_cams,
    prepare_cam_dir,
    read_cam_manifest,
    save_cams,
)
from .crf import CRFParams, background_scores, crf_inference, crf_refine_cams
from .gt_standins import standin_cam, write_gt_standin_cams
from .inference import S2C_SCALES, batch_multiscale_cams, infer_cam_dir, multiscale_cams
from .normalize import normalize_cams
from .peaks import batched_find_peaks, find_peaks

__all__ = [
    'CamFileError', 'cam_manifest', 'cam_path', 'load_cams', 'prepare_cam_dir',
    'read_cam_manifest', 'save_cams', 'CRFParams', 'background_scores', 'crf_inference',
    'crf_refine_cams', 'S2C_SCALES', 'batch_multiscale_cams', 'infer_cam_dir', 'multiscale_cams',
    'normalize_cams', 'batched_find_peaks', 'find_peaks', 'standin_cam', 'write_gt_standin_cams'
]
