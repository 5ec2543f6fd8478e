"""ImageNet normalisation of the CAM classifier's inputs (one definition for every stage).

The classifier (ResNet-38d, ImageNet weights of PSA/S2C) sees images as
``(img / 255 - mean) / std`` per RGB channel (official ``voc12/data.py`` and
``infer_multi``). The training pipeline (``Normalize``), multi-scale CAM
inference and CPM's online mode (which turns the normalised crop back into
RGB for SAM) use these functions.
"""
from __future__ import annotations

import numpy as np
import torch

#: ImageNet RGB mean and std in [0, 1] units.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB in [0, 255] -> ``(H, W, 3)`` float32 ``(img / 255 - mean) / std``.

    Computed in float64 with the constants as Python doubles and rounded to
    float32 once, as the official ``tools/imutils.py`` ``normalize`` does (in
    float32 arithmetic most values would differ in the last bit, and some
    bytes that CPM's online mode makes from them by one grey level).
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    return ((img / 255.0 - mean) / std).astype(np.float32)


def denormalize_images(x: torch.Tensor) -> torch.Tensor:
    """Invert :func:`normalize_image`: ``(B, 3, H, W)`` -> RGB in [0, 255] (float, not clamped).

    Computed with the official S2C arithmetic (``tools/imutils.py`` ``denorm``:
    torchvision's ``Normalize`` with mean ``-m / s`` and std ``1 / s``, i.e.
    ``(x - (-m / s)) / (1 / s)`` with both constants in float32, then ``* 255``),
    so that the bytes made from it are the official ones. Values may lie a
    rounding error outside [0, 255].
    """
    shift = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)],
                         dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    scale = torch.tensor([1 / s for s in IMAGENET_STD], dtype=torch.float32,
                         device=x.device).view(1, 3, 1, 1)
    return (x.float() - shift) / scale * 255
