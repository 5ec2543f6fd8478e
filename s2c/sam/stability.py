"""SAM's stability score of a mask (one definition for the AMG, CPM and refinement)."""
from __future__ import annotations

import torch


def stability_score(logits: torch.Tensor, mask_threshold: float = 0.0, offset: float = 1.0,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """``count(logit > t + offset) / count(logit > t - offset)`` over the last two dims.

    The IoU between the mask binarised at ``t + offset`` and at ``t - offset``
    (segment-anything ``utils/amg.py`` ``calculate_stability_score``), computed
    on full-resolution logits by the AMG and on crop-frame logits by CPM.

    Args:
        logits: ``(N, H, W)`` mask logits.
        mask_threshold: ``t`` (SAM: 0.0).
        offset: Stability score offset (SAM: 1.0).
        valid: Optional ``(N, H, W)`` bool pixels to count (e.g. CPM's non-padding
            crop pixels); default all.

    Returns:
        torch.Tensor: ``(N,)`` float32 in [0, 1]; ``nan`` when both counts are 0
        (no pixel above ``t - offset``), as the library: such a mask fails every
        stability threshold and covers no pixel in CPM.
    """
    hi = logits > (mask_threshold + offset)
    lo = logits > (mask_threshold - offset)
    if valid is not None:
        hi, lo = hi & valid, lo & valid
    return hi.sum(dim=(-1, -2)).float() / lo.sum(dim=(-1, -2)).float()
