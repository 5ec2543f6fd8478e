"""CPM's loss: cross-entropy between the SAM pseudo-label and the [0, 1] CAMs.

Official ``model_s2c.py`` 345-357: the normalised CAMs of the training forward
(upsampled to the crop, x labels) and a background channel ``1 - max_c CAM_c``
are fed to the cross-entropy as logits; the target is CPM's label
(``0..C-1`` classes, ``C`` background, 255 ignored).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s2c.cam.normalize import normalize_cams
from s2c.registry import MODELS
from s2c.structures import IGNORE_INDEX


@MODELS.register_module()
class CPMLoss(nn.Module):
    """``loss_cpm = w * CE([CAM_1..CAM_C, 1 - max_c CAM_c], target)``.

    Args:
        loss_weight: ``w`` (S2C: 1).
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, cam: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                crop_size: Sequence[int]) -> torch.Tensor:
        """Compute the loss.

        Args:
            cam: ``(B, C, h, w)`` raw CAMs of the training forward.
            labels: ``(B, C)`` multi-hot labels.
            targets: ``(B, H, W)`` long CPM targets.
            crop_size: ``(H, W)``.

        Returns:
            torch.Tensor: Scalar loss (0 with a graph when every pixel is ignored).
        """
        cams = F.interpolate(normalize_cams(cam), size=tuple(crop_size), mode='bilinear',
                             align_corners=False) * labels[:, :, None, None]
        bg = 1.0 - cams.max(dim=1, keepdim=True).values
        logits = torch.cat([cams, bg], dim=1)
        if not bool((targets != IGNORE_INDEX).any()):
            return logits.sum() * 0.0
        return self.loss_weight * F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
