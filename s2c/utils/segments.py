"""Segment id maps: renumbering ids to ``1..K`` (one rule for SE maps and crops)."""
from __future__ import annotations

import numpy as np


def renumber_segments(labels: np.ndarray) -> np.ndarray:
    """Renumber the non-zero ids of a segment map to ``1..K`` keeping their order; 0 stays 0.

    Used when an SE map is composed (ids still visible after painting) and when
    a training crop is packed (ids of the segments inside the crop).

    Args:
        labels: ``(H, W)`` non-negative integer map (0 = no segment).

    Returns:
        np.ndarray: ``(H, W)`` int64 map with ids ``0..K``, ``K`` = number of
        distinct non-zero ids.

    Raises:
        ValueError: When ``labels`` holds negative ids.

    Example:
        >>> renumber_segments(np.array([[0, 7], [3, 7]])).tolist()
        [[0, 2], [1, 2]]
    """
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError(f'segment ids must be >= 0, got min {labels.min()}')
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] != 0:
        inverse = inverse + 1  # no uncovered pixel: every id shifts up by one
    return inverse.reshape(labels.shape).astype(np.int64)
