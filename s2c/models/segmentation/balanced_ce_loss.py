"""Class-balanced cross-entropy for training on pseudo-labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn


@SEG_MODELS.register_module()
class ClassBalancedCELoss(nn.Module):
    """Cross-entropy averaged per class, then over the classes present in the batch.

    ``loss = (1 / |K|) * sum_{c in K} mean_{p : y_p = c} CE(p)``, ``K`` = the classes with at
    least one non-ignored pixel in the batch. Every present class weighs the same whatever
    its pixel count (inverse-frequency weighting computed per batch), so background, which
    covers most pseudo-label pixels, cannot dominate the gradient; with a single class present
    it is plain cross-entropy. A remedy peers use when DeepLab trained from an ImageNet init
    on pseudo-labels diverges (NaN losses) with the plain loss.

    Args:
        loss_weight: Multiplier of the loss.
        loss_name: Key in the loss dict; starts with ``loss_`` so MMEngine sums it.
        use_sigmoid: Must be False (accepted so that ``loss_decode.type=ClassBalancedCELoss``
            can replace mmseg's ``CrossEntropyLoss`` entry in place).
        **kwargs: Other ``CrossEntropyLoss`` keys of that entry (``avg_non_ignore``...):
            ignored, the loss always averages over non-ignored pixels.

    Shapes:
        ``forward(cls_score, label)``: logits ``(B, C, H, W)``, labels ``(B, H, W)`` int64 in
        ``[0, C)`` or ``ignore_index`` -> scalar. A batch of ignored pixels only gives 0
        (with a gradient graph, so DDP stays in step).
    """

    def __init__(self, loss_weight: float = 1.0, loss_name: str = 'loss_ce_balanced',
                 use_sigmoid: bool = False, **kwargs) -> None:
        super().__init__()
        if use_sigmoid:
            raise ValueError('ClassBalancedCELoss is a softmax cross-entropy: use_sigmoid must '
                             'be False')
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name {loss_name!r} must start with "loss_" '
                             '(MMEngine sums only those keys)')
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor,
                weight: torch.Tensor | None = None, ignore_index: int = 255,
                **kwargs) -> torch.Tensor:
        """See the class docstring. ``weight`` (mmseg's per-pixel sampler weight) multiplies
        each pixel's cross-entropy before the per-class means."""
        ce = F.cross_entropy(cls_score, label, reduction='none', ignore_index=ignore_index)
        if weight is not None:
            ce = ce * weight
        valid = label != ignore_index
        if not bool(valid.any()):
            return cls_score.sum() * 0.0
        classes = label[valid]
        num_classes = cls_score.shape[1]
        per_class_sum = torch.zeros(num_classes, dtype=ce.dtype, device=ce.device)
        per_class_sum.index_add_(0, classes, ce[valid])
        counts = torch.bincount(classes, minlength=num_classes).to(ce.dtype)
        present = counts > 0
        return self.loss_weight * (per_class_sum[present] / counts[present]).mean()

    @property
    def loss_name(self) -> str:
        """The loss dict key (mmseg's loss interface)."""
        return self._loss_name
