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
    """``(H, W, 3)`` uint8 RGB in [0, 255] -> ``(H, W, 3)`` float32 ``(img / 255 - mean) / std``."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return (img.astype(np.float32) / 255.0 - mean) / std


def denormalize_images(x: torch.Tensor) -> torch.Tensor:
    """Invert :func:`normalize_image`: ``(B, 3, H, W)`` -> RGB in [0, 255] (float, clamped)."""
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x * std + mean) * 255.0).clamp(0, 255)
