"""The three label spaces of the pipeline and the conversions between them.

=================  ==========================  ==================  ==========
space              foreground class ``c``      background          ignore
=================  ==========================  ==================  ==========
CAM keys           ``c`` (``0..C-1``)          -                   -
label map (PNG)    ``c + 1`` (``1..C``)        ``0``               ``255``
CPM target         ``c`` (``0..C-1``)          ``C``               ``255``
=================  ==========================  ==================  ==========

- *CAM keys*: the 0-based foreground class indices of the CAMs an image has
  (CAM files, ``CAMClassifier.predict``; VOC: 0 = aeroplane ... 19 = tvmonitor).
- *Label maps*: pseudo-label and ground-truth PNGs (VOC palette), predictions
  scored by the metrics; the convention DeepLab training reads.
- *CPM targets*: CPM's pseudo-labels, the cross-entropy target over the
  channels ``[CAM_1, ..., CAM_C, background]`` (official ``model_s2c.py``
  puts the background channel last).
"""
from __future__ import annotations

import numpy as np
import torch

#: Ignored pixels in label maps and CPM targets (padding, uncertain pixels).
IGNORE_INDEX = 255
#: Background in label maps.
BACKGROUND = 0


def keys_to_labels(keys: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """CAM keys (``0..C-1``) -> label-map values (``1..C``)."""
    return keys + 1


def cpm_to_labels(target: np.ndarray | torch.Tensor,
                  num_classes: int) -> np.ndarray | torch.Tensor:
    """CPM target (``0..C-1``, ``C`` = background, 255) -> label map (``0`` bg, ``1..C``, 255).

    Args:
        target: ``(..., H, W)`` integer CPM target.
        num_classes: ``C``.

    Returns:
        Same type and shape; numpy input gives uint8.
    """
    if isinstance(target, torch.Tensor):
        out = torch.where(target == num_classes, torch.zeros_like(target), target + 1)
        return torch.where(target == IGNORE_INDEX, target, out)
    target = np.asarray(target)
    out = np.where(target == num_classes, BACKGROUND, target + 1)
    return np.where(target == IGNORE_INDEX, IGNORE_INDEX, out).astype(np.uint8)


def labels_to_cpm(label: np.ndarray | torch.Tensor,
                  num_classes: int) -> np.ndarray | torch.Tensor:
    """Label map (``0`` bg, ``1..C``, 255) -> CPM target (``0..C-1``, ``C`` = background, 255)."""
    if isinstance(label, torch.Tensor):
        out = torch.where(label == BACKGROUND, torch.full_like(label, num_classes), label - 1)
        return torch.where(label == IGNORE_INDEX, label, out)
    label = np.asarray(label).astype(np.int64)
    out = np.where(label == BACKGROUND, num_classes, label - 1)
    return np.where(label == IGNORE_INDEX, IGNORE_INDEX, out)
