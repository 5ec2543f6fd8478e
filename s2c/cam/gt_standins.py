"""CAM stand-ins made from ground truth, for tools that need CAMs where no trained
classifier is available (benchmarks, comparisons, the CPU build machine).

A stand-in for class ``c`` is the Euclidean distance transform of the class's
mask, Gaussian-blurred and divided by its maximum: values in [0, 1), peaks inside
the objects (several along a large or elongated object), zero outside. It is not
a CAM of any model: it says where the objects are, as a good CAM would.
"""
from __future__ import annotations

import os.path as osp
import time
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from s2c.utils.job_summary import JobSummary
from s2c.utils.label_io import load_label_png
from s2c.utils.manifest import make_manifest

from .cam_io import CAM_FORMAT_VERSION, CAM_KIND, cam_path, prepare_cam_dir, save_cams

STANDIN_SIGMA = 4.0


def standin_cam(mask: np.ndarray, sigma: float = STANDIN_SIGMA) -> np.ndarray:
    """``(H, W)`` bool mask -> ``(H, W)`` float32 stand-in CAM in [0, 1) (module docstring)."""
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), sigma)
    return (dist / (dist.max() + 1e-5)).astype(np.float32)


def write_gt_standin_cams(seg_dir: str, names: Sequence[str], out_dir: str,
                          num_classes: int = 20, sigma: float = STANDIN_SIGMA,
                          progress: bool = True) -> JobSummary:
    """Write ``<out_dir>/<name>.npz`` stand-in CAMs of every class in each ground truth.

    The folder's manifest says the CAMs are ground-truth stand-ins (with ``sigma``),
    so pseudo-label folders made from them record that.

    Args:
        seg_dir: Ground-truth label PNGs (0 background, 1..C, 255 ignore).
        names: Image ids.
        out_dir: CAM folder.
        num_classes: Foreground classes ``C``.
        sigma: Gaussian blur of the distance transform, pixels.
        progress: Show a progress bar.

    Returns:
        JobSummary: Written names; images without ground truth fail (``missing_gt``).
    """
    prepare_cam_dir(out_dir, make_manifest(CAM_KIND, CAM_FORMAT_VERSION,
                                           dict(standin='ground_truth', sigma=float(sigma)),
                                           dict(seg_dir=osp.abspath(seg_dir))))
    summary = JobSummary(CAM_KIND, out_dir, total=len(names))
    start = time.perf_counter()
    for name in tqdm(names, desc='stand-in CAMs', unit='img', disable=not progress):
        path = osp.join(seg_dir, name + '.png')
        if not osp.isfile(path):
            summary.fail(name, f'{path} not found', 'missing_gt')
            continue
        gt = load_label_png(path)
        keys = np.array([c for c in range(num_classes) if (gt == c + 1).any()], np.int64)
        cams = np.stack([standin_cam(gt == k + 1, sigma) for k in keys]) if len(keys) else \
            np.zeros((0, *gt.shape), np.float32)
        save_cams(cam_path(out_dir, name), keys, cams)
        summary.done.append(name)
    summary.wall_s = time.perf_counter() - start
    return summary
