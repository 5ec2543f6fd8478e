"""CAM normalisation: ReLU, then each map divided by its maximum (one rule everywhere)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Added to the maximum (official ``cam / (max + 1e-5)``).
CAM_EPS = 1e-5


def normalize_cams(cams: torch.Tensor, eps: float = CAM_EPS) -> torch.Tensor:
    """``relu(cam) / (max relu(cam) + eps)`` per map.

    Used for validation CAMs, CPM's multi-scale CAMs and its loss, and the
    8-view inference CAMs (official ``model_s2c.py``: ``cam / (max + 1e-5)``
    after ReLU; for a sum of ReLU'd views the ReLU changes nothing).

    Args:
        cams: ``(..., H, W)`` raw class activation maps (or sums of ReLU'd views).
        eps: Added to the maximum; an all-zero map stays zero.

    Returns:
        torch.Tensor: Same shape, values in ``[0, 1)``.
    """
    cams = F.relu(cams)
    peak = cams.flatten(-2).max(dim=-1).values[..., None, None]
    return cams / (peak + eps)
