"""CPM prompts: CAM peaks of every present class -> one point prompt per (image, class)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from s2c.cam.peaks import batched_find_peaks
from s2c.structures import PromptBatch


def peak_prompts(cams: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5,
                 min_distance: int = 20, filter_size: int = 3, rule: str = 'snapped'
                 ) -> tuple[list[int], list[int], list[np.ndarray]]:
    """Peaks of every present class (CPM step 2, official ``model_s2c.py`` 230-256).

    The peaks of all present classes are found in one batch on the CAMs' device
    (:func:`~s2c.cam.peaks.batched_find_peaks`, equal to ``find_peaks`` of each
    map) and copied to the host once.

    Args:
        cams: ``(B, C, H, W)`` normalised CAMs in the crop frame (zero where the
            crop is padding when no peak may lie there).
        labels: ``(B, C)`` multi-hot labels; a class with label > 0.5 gets a prompt.
        threshold: ``tau`` (S2C: 0.5).
        min_distance: Minimum peak distance, crop pixels (S2C: 20).
        filter_size: Maximum-filter size (S2C: 3).
        rule: ``'snapped'`` or ``'official'`` (:data:`~s2c.cam.peaks.PEAK_RULES`).

    Returns:
        tuple: image index, 0-based class index and ``(P, 2)`` int64 ``(row, col)``
        peaks (global maximum first; :func:`~s2c.cam.peaks.find_peaks`) of each prompt.
        A class without any peak (``'snapped'``: its CAM never exceeds ``threshold``) gets
        no prompt, so no SAM mask is labelled with it.

    Raises:
        ValueError: For an unknown ``rule`` (when a class is present).
    """
    present = torch.nonzero(labels > 0.5).to(cams.device)  # (M, 2) (image, class)
    if not len(present):
        return [], [], []
    found, map_index = batched_find_peaks(cams[present[:, 0], present[:, 1]], threshold,
                                          min_distance, filter_size, rule)
    m = len(present)
    packed = torch.cat([present.flatten(), map_index, found.flatten()]).cpu().numpy()  # 1 copy
    present, map_index = packed[:2 * m].reshape(m, 2), packed[2 * m:2 * m + len(map_index)]
    found = packed[2 * m + len(map_index):].reshape(-1, 2)
    counts = np.bincount(map_index, minlength=m)
    per_map = np.split(found, np.cumsum(counts)[:-1])
    has_peak = np.flatnonzero(counts)
    return (present[has_peak, 0].tolist(), present[has_peak, 1].tolist(),
            [np.ascontiguousarray(per_map[i]) for i in has_peak])


def points_to_prompts(points: Sequence[np.ndarray], image_index: Sequence[int],
                      class_index: Sequence[int]) -> PromptBatch:
    """One prompt of positive points per entry (all peaks of a class form ONE prompt).

    Args:
        points: ``(P_n, 2)`` ``(x, y)`` SAM input-frame points of each prompt;
            kept in float64 (the official code passes float64 points to SAM's
            prompt encoder, which divides by the input size before its float32 cast).
        image_index: Image of each prompt.
        class_index: 0-based class of each prompt.

    Returns:
        PromptBatch: ``N`` prompts padded to the largest ``P`` (labels 1, padding -1).
    """
    n = len(points)
    num_pts = max(len(p) for p in points)
    pts = torch.zeros(n, num_pts, 2, dtype=torch.float64)
    lab = torch.full((n, num_pts), -1, dtype=torch.long)
    for i, p in enumerate(points):
        pts[i, :len(p)] = torch.as_tensor(p, dtype=torch.float64)
        lab[i, :len(p)] = 1
    return PromptBatch(points=pts, labels=lab, image_index=torch.as_tensor(image_index),
                       class_index=torch.as_tensor(class_index))
