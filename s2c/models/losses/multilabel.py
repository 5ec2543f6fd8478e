"""Multi-label classification loss on the pooled CAM logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2c.registry import MODELS


@MODELS.register_module()
class MultiLabelBCELoss(nn.Module):
    """Binary cross-entropy with logits, averaged over batch and classes.

    ``loss = mean_{b,c} BCEWithLogits(logits[b, c], labels[b, c])``, as
    ``nn.BCEWithLogitsLoss()`` in the official ``model_s2c.py``.

    Args:
        loss_weight: Multiplier (S2C: 1).
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``logits``/``labels``: ``(B, C)``; labels are 0/1 floats. Returns a scalar."""
        return self.loss_weight * F.binary_cross_entropy_with_logits(logits, labels.float())
