"""Mask logits of a prompt back-end: every output channel, named, with its predicted IoU."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class MaskPrediction:
    """All output channels of a back-end for ``N`` prompts.

    Attributes:
        logits: ``(N, M, s, s)`` low-resolution mask logits over the padded SAM
            input frame (``s = img_size / 4``: 256 for the official models).
        iou: ``(N, M)`` predicted IoU of each channel (``nan`` where the variant
            predicts none, e.g. HQ-SAM's HQ mask).
        names: ``M`` channel names (vanilla SAM: ``single, multi_0, multi_1, multi_2``).

    Raises:
        ValueError: When ``len(names) != M`` or the shapes disagree.
    """

    logits: torch.Tensor
    iou: torch.Tensor
    names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        if self.logits.ndim != 4 or tuple(self.iou.shape) != tuple(self.logits.shape[:2]):
            raise ValueError(f'logits must be (N, M, s, s) and iou (N, M), got '
                             f'{tuple(self.logits.shape)} and {tuple(self.iou.shape)}')
        if len(self.names) != self.logits.shape[1]:
            raise ValueError(f'{len(self.names)} channel names for {self.logits.shape[1]} channels')

    def __len__(self) -> int:
        return int(self.logits.shape[0])
