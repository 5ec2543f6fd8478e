"""SE maps: one label map per image composed from overlapping masks.

An SE ("segment everything") map is an ``(H, W)`` uint16 array at the
original image resolution: 0 = no segment, 1..K = segments (contiguous).
S2C's SSC loss pulls the features of each segment towards its prototype.

Overlap rules:

- ``'smallest_on_top'`` (paper, default): masks are painted from the largest
  to the smallest area, so a smaller segment wins where masks overlap; equal
  areas: the higher predicted IoU (earlier in generator order) on top.
- ``'highest_iou_on_top'``: masks are painted from the lowest to the highest
  predicted IoU (stable; without IoUs, in reversed list order).
- ``'first_on_top'`` (official code, sangrockEG/S2C ``get_se_map.py`` 57-59,
  which paints ``reversed(masks)``): masks are painted in reversed generator
  order, so the first listed mask is on top. The generator lists masks by
  descending predicted IoU within a crop, so without crop layers
  (``crop_n_layers=0``) and without small-region clean-up
  (``min_mask_region_area=0``) this equals ``'highest_iou_on_top'``; with
  them the generator's cross-crop NMS reorders the list (by crop area) and
  only this rule reproduces the official maps.

After painting, the ids still visible are renumbered ``1..K`` in painting
order (so a fully covered mask disappears and the top-most painted visible
segment has the largest id). ``'first_on_top'`` keeps the official ids
instead: the mask painted ``i``-th (0-based, i.e. listed ``i``-th from the
end) has id ``i + 1`` (official ``temp[mask] = i`` on a ``-1`` canvas, plus the
``+ 1`` of ``voc12/data.py``), so a fully covered mask leaves a gap; this
matters only to the official ``uint8`` wrap of ids
(:class:`~s2c.datasets.transforms.RenumberSegmentsBeforeCrop`). More than
65,535 segments is an error (maps are stored as uint16 PNG,
:mod:`s2c.utils.se_map_io`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s2c.utils.se_map_io import MAX_SEGMENTS
from s2c.utils.segments import renumber_segments

OVERLAP_RULES = ('smallest_on_top', 'highest_iou_on_top', 'first_on_top')


def check_overlap_rule(overlap: str) -> str:
    """Return ``overlap`` if it is a known rule, else raise ``ValueError``."""
    if overlap not in OVERLAP_RULES:
        raise ValueError(f'unknown SE map overlap rule {overlap!r}; choose one of {OVERLAP_RULES}')
    return overlap


def paint_order(areas: np.ndarray, predicted_iou: np.ndarray | None, overlap: str) -> np.ndarray:
    """Indices of the masks in painting order (bottom first, top last).

    Args:
        areas: ``(N,)`` mask areas in pixels.
        predicted_iou: ``(N,)`` predicted IoUs, or None (use the list order as
            descending quality, i.e. the generator's order).
        overlap: One of :data:`OVERLAP_RULES`.

    Returns:
        np.ndarray: ``(N,)`` int64 permutation.
    """
    check_overlap_rule(overlap)
    n = len(areas)
    if overlap == 'first_on_top':
        return np.arange(n - 1, -1, -1, dtype=np.int64)
    # Rank 0 = best quality (painted last among equals).
    rank = (np.arange(n) if predicted_iou is None else
            np.argsort(-np.asarray(predicted_iou, dtype=np.float64), kind='stable'))
    quality = np.empty(n, dtype=np.int64)
    quality[rank] = np.arange(n)
    if overlap == 'highest_iou_on_top':
        return np.argsort(-quality, kind='stable')
    # Largest area first; ties: worse quality first so the better one is on top.
    return np.lexsort((-quality, -np.asarray(areas, dtype=np.int64)))


def renumber_se_map(labels: np.ndarray) -> np.ndarray:
    """Renumber the non-zero ids of a label map to ``1..K`` keeping their order.

    Args:
        labels: ``(H, W)`` non-negative integer map (0 = no segment).

    Returns:
        np.ndarray: ``(H, W)`` uint16.

    Raises:
        ValueError: Negative ids, or more than 65,535 distinct segments.
    """
    ids = renumber_segments(labels)
    k = int(ids.max()) if ids.size else 0
    if k > MAX_SEGMENTS:
        raise ValueError(f'{k} segments do not fit a uint16 SE map (at most {MAX_SEGMENTS}); '
                         'lower the number of masks (e.g. raise pred_iou_thresh).')
    return ids.astype(np.uint16)


def compose_se_map(masks: np.ndarray | Sequence[np.ndarray],
                   predicted_iou: np.ndarray | Sequence[float] | None = None,
                   overlap: str = 'smallest_on_top',
                   image_size: Sequence[int] | None = None) -> np.ndarray:
    """Paint masks into one SE map.

    Args:
        masks: ``(N, H, W)`` bool masks (original frame), in generator order.
        predicted_iou: ``(N,)`` predicted IoUs (None: list order = descending).
        overlap: ``'smallest_on_top'`` (paper), ``'highest_iou_on_top'`` or
            ``'first_on_top'`` (official code). See the module docstring.
        image_size: ``(H, W)``; required when ``masks`` is empty.

    Returns:
        np.ndarray: ``(H, W)`` uint16, 0 = no segment, 1..K contiguous (official
        ids with gaps for ``'first_on_top'``).

    Raises:
        ValueError: Unknown rule, inconsistent shapes, or > 65,535 segments.
    """
    check_overlap_rule(overlap)
    if len(masks) == 0:
        if image_size is None:
            raise ValueError('image_size is needed to compose an SE map from no masks')
        return np.zeros(tuple(int(s) for s in image_size), dtype=np.uint16)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f'masks must be (N, H, W), got shape {masks.shape}')
    if image_size is not None and tuple(masks.shape[1:]) != tuple(int(s) for s in image_size):
        raise ValueError(f'masks are {masks.shape[1:]} but image_size is {tuple(image_size)}')
    if predicted_iou is not None and len(predicted_iou) != len(masks):
        raise ValueError(f'{len(masks)} masks but {len(predicted_iou)} predicted IoUs')
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    canvas = np.zeros(masks.shape[1:], dtype=np.int32)
    for step, idx in enumerate(paint_order(areas, predicted_iou, overlap), start=1):
        canvas[masks[idx]] = step
    if overlap == 'first_on_top':
        if len(masks) > MAX_SEGMENTS:
            raise ValueError(f'{len(masks)} masks do not fit a uint16 SE map (at most '
                             f'{MAX_SEGMENTS}); lower the number of masks (e.g. raise '
                             'pred_iou_thresh).')
        return canvas.astype(np.uint16)
    return renumber_se_map(canvas)
