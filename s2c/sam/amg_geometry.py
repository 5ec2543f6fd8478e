"""Geometry of the segment-everything generator: point grids, crop boxes, mask boxes and
the small-region clean-up (facts of segment-anything 1.0 ``utils/amg.py``; our code)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import cv2
import numpy as np
import torch


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` xy points at ``(i + 0.5) / n`` in ``[0, 1]^2``, x fastest."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int,
                                scale_per_layer: int) -> list[np.ndarray]:
    """Point grids of crop layers ``0..n_layers`` (``int(n / scale**i)`` per side)."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Sequence[int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (xyxy, original pixels) and their layer indices.

    Layer 0 is the whole image; layer ``i >= 1`` has ``(2**i)**2`` overlapping
    crops, listed x-major. Overlap of layer ``i``:
    ``int(overlap_ratio * short_side * 2 / 2**i)`` pixels.
    """
    im_h, im_w = int(im_size[0]), int(im_size[1])
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for i in range(n_layers):
        n = 2**(i + 1)
        overlap = int(overlap_ratio * min(im_h, im_w) * (2 / n))
        crop_w = int(math.ceil((overlap * (n - 1) + im_w) / n))
        crop_h = int(math.ceil((overlap * (n - 1) + im_h) / n))
        x0s = [int((crop_w - overlap) * k) for k in range(n)]
        y0s = [int((crop_h - overlap) * k) for k in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i + 1)
    return boxes, layers


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Boxes ``(N, 4)`` int64 xyxy (inclusive pixel indices) of ``(N, H, W)`` bool masks.

    An empty mask gives ``[0, 0, 0, 0]``.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.long, device=masks.device)
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1)
    y0 = torch.where(rows, ar_h, h).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1)
    x0 = torch.where(cols, ar_w, w).amin(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    return boxes * rows.any(dim=1, keepdim=True)


def box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int],
                       atol: float = 20.0) -> torch.Tensor:
    """``(N,)`` bool: a box (crop frame) lies within ``atol`` px of a crop edge that is
    not also an image edge (original frame)."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    shift = torch.as_tensor([crop_box[0], crop_box[1]] * 2, device=boxes.device)
    b = (boxes + shift).float()
    near_crop = (b - crop).abs() <= atol
    near_image = (b - orig).abs() <= atol
    return (near_crop & ~near_image).any(dim=1)


def remove_small_regions(mask: np.ndarray, area_thresh: float,
                         mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or drop islands (``'islands'``) under ``area_thresh`` px.

    8-connected components (OpenCV). When every island is small, the largest
    one is kept. Returns the new mask and whether it changed.
    """
    if mode not in ('holes', 'islands'):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == 'holes'
    work = (mask ^ holes).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(work, 8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    if holes:
        fill = [0] + small
    else:
        fill = [i for i in range(1, n_labels) if i not in small] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True
