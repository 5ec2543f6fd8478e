"""CAM peaks used as SAM point prompts (CPM step 3; official ``model_s2c.py`` 230-256)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max


def find_peaks(cam: np.ndarray, threshold: float = 0.5, min_distance: int = 20,
               filter_size: int = 3) -> np.ndarray:
    """Global maximum plus local maxima of one normalised CAM.

    Follows the official code: the map is smoothed with a ``filter_size``
    maximum filter (zero padding), local maxima are found with scikit-image's
    ``peak_local_max(min_distance=min_distance)`` (which also excludes a
    border of ``min_distance`` pixels), and kept where the *raw* CAM exceeds
    ``threshold``. The global maximum is always kept. The official code drops
    the first (strongest) local maximum as a duplicate of the global maximum;
    we drop the local maxima closer than ``min_distance`` to the global
    maximum instead, which is the same in the usual case and does not lose a
    real peak when the global maximum lies in the excluded border. The
    maximum filter turns every maximum into a ``filter_size`` plateau, on which
    ``peak_local_max`` returns a corner (the official peaks are off by one
    pixel); we snap each peak back to the raw maximum inside its window.

    Args:
        cam: ``(H, W)`` CAM in [0, 1] (crop frame).
        threshold: ``tau`` (S2C: 0.5).
        min_distance: Minimum distance between peaks, pixels (S2C: 20).
        filter_size: Maximum-filter size (S2C: 3).

    Returns:
        np.ndarray: ``(N, 2)`` int64 ``(row, col)`` peaks, global maximum first,
        then local maxima by decreasing filtered value; ``N >= 1``.
    """
    cam = np.asarray(cam, dtype=np.float32)
    top = np.array(np.unravel_index(int(np.argmax(cam)), cam.shape), dtype=np.int64)
    filtered = ndi.maximum_filter(cam, size=filter_size, mode='constant')
    local = peak_local_max(filtered, min_distance=min_distance)
    if local.size:
        local = _snap_to_raw_maximum(cam, local, filter_size)
        local = local[cam[local[:, 0], local[:, 1]] > threshold]
        far = np.sqrt(((local - top) ** 2).sum(axis=1)) >= min_distance
        local = local[far]
    return np.concatenate([top[None], local.reshape(-1, 2).astype(np.int64)], axis=0)


def _snap_to_raw_maximum(cam: np.ndarray, peaks: np.ndarray, size: int) -> np.ndarray:
    """Move each ``(row, col)`` peak to the largest raw CAM value within its ``size`` window."""
    r = size // 2
    h, w = cam.shape
    out = peaks.copy()
    for i, (y, x) in enumerate(peaks):
        y0, x0 = max(y - r, 0), max(x - r, 0)
        window = cam[y0:min(y + r + 1, h), x0:min(x + r + 1, w)]
        dy, dx = np.unravel_index(int(np.argmax(window)), window.shape)
        out[i] = (y0 + dy, x0 + dx)
    return out
