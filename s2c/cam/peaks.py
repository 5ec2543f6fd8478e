"""CAM peaks used as SAM point prompts (CPM step 2; official ``model_s2c.py`` 230-258).

Two rules, both from the same local maxima: the CAM is smoothed with a
``filter_size`` maximum filter (zero padding), local maxima of the smoothed
map are found with scikit-image's ``peak_local_max(min_distance=...)`` (which
also excludes a border of ``min_distance`` pixels and returns the peaks by
decreasing smoothed value), and kept where the *raw* CAM exceeds
``threshold``. The global maximum of the raw CAM always comes first.

- ``'snapped'`` (default): local maxima closer than ``min_distance`` to the
  global maximum are dropped as its duplicates, and every kept peak is moved
  to the largest raw CAM value inside its ``filter_size`` window. The maximum
  filter turns a maximum into a ``filter_size`` plateau on which
  ``peak_local_max`` returns the plateau's first (top-left) pixel, one pixel
  diagonal from the true maximum; snapping prompts SAM at the maximum itself,
  and a genuine peak far from a global maximum in the excluded border is kept.
  A CAM whose global maximum is not above ``threshold`` (e.g. all zero: the class
  has no activation in the crop) has no peak and gets no prompt.
- ``'official'``: exactly the official points: the first thresholded local
  maximum is always dropped (assumed to be the global maximum), and peaks stay
  where ``peak_local_max`` put them (plateau corners). When the global maximum
  lies in the excluded border, the dropped "first" peak is a genuine one. The
  global maximum is kept whatever its value, so an all-zero CAM is prompted at
  pixel (0, 0) (official ``model_s2c.py`` 240-246: ``argmax`` of the CAM).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

PEAK_RULES = ('snapped', 'official')


def find_peaks(cam: np.ndarray, threshold: float = 0.5, min_distance: int = 20,
               filter_size: int = 3, rule: str = 'snapped') -> np.ndarray:
    """Global maximum plus local maxima of one normalised CAM (see the module docstring).

    Args:
        cam: ``(H, W)`` CAM in [0, 1] (crop frame).
        threshold: ``tau`` (S2C: 0.5); a local maximum is kept where the raw CAM
            is above it.
        min_distance: Minimum distance between peaks and excluded border, pixels (S2C: 20).
        filter_size: Maximum-filter size (S2C: 3).
        rule: ``'snapped'`` or ``'official'``.

    Returns:
        np.ndarray: ``(N, 2)`` int64 ``(row, col)`` peaks, global maximum first,
        then local maxima by decreasing filtered value; ``N >= 1`` for ``'official'``,
        ``N = 0`` for ``'snapped'`` when the CAM's maximum is not above ``threshold``.

    Raises:
        ValueError: For an unknown ``rule``.
    """
    if rule not in PEAK_RULES:
        raise ValueError(f'unknown peak rule {rule!r}; choose one of {PEAK_RULES}')
    cam = np.asarray(cam, dtype=np.float32)
    top = np.array(np.unravel_index(int(np.argmax(cam)), cam.shape), dtype=np.int64)
    filtered = ndi.maximum_filter(cam, size=filter_size, mode='constant')
    local = peak_local_max(filtered, min_distance=min_distance).reshape(-1, 2).astype(np.int64)
    if rule == 'official':
        local = local[cam[local[:, 0], local[:, 1]] > threshold][1:]
    elif cam[top[0], top[1]] <= threshold:
        return np.zeros((0, 2), np.int64)  # no activation above tau: no prompt
    elif local.size:
        local = _snap_to_raw_maximum(cam, local, filter_size)
        local = local[cam[local[:, 0], local[:, 1]] > threshold]
        local = local[np.sqrt(((local - top) ** 2).sum(axis=1)) >= min_distance]
    return np.concatenate([top[None], local.reshape(-1, 2)], axis=0)


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
