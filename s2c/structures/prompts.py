"""Prompts of several images for a SAM decoder, in the SAM input frame of each image.

Points are ``(x, y)`` pixel coordinates of the SAM input frame (SAM's prompt
encoder adds 0.5 to reach pixel centres); boxes are ``(x0, y0, x1, y1)`` in the
same frame; mask inputs are low-resolution logits (``4h x 4w``, the decoder's
output resolution) covering the padded input square.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PromptBatch:
    """``N`` prompts over a batch of images.

    Attributes:
        points: ``(N, P, 2)`` float ``(x, y)`` SAM input-frame pixels; rows are
            padded to ``P``. The dtype is kept up to SAM's prompt encoder
            (float64 points are divided by the input size before its float32 cast).
        labels: ``(N, P)`` long: 1 positive, 0 negative, -1 padding.
        image_index: ``(N,)`` long: the image of each prompt (index into
            :class:`~s2c.structures.ImageFeatures`).
        class_index: ``(N,)`` long 0-based class of each prompt, or ``None``.
        boxes: ``(N, 4)`` float boxes, a row of NaN = no box for that prompt; or ``None``.
        mask_inputs: ``(N, 1, 4h, 4w)`` low-res mask logits given as prompts
            (every prompt has one), or ``None``.
        extras: Back-end specific per-prompt tensors, leading dim ``N``.

    Raises:
        ValueError: When the shapes disagree (checked at construction).
    """

    points: torch.Tensor
    labels: torch.Tensor
    image_index: torch.Tensor
    class_index: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    mask_inputs: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.points.shape[0]
        if self.points.ndim != 3 or self.points.shape[-1] != 2:
            raise ValueError(f'points must be (N, P, 2), got {tuple(self.points.shape)}')
        if tuple(self.labels.shape) != tuple(self.points.shape[:2]):
            raise ValueError(f'labels must be {tuple(self.points.shape[:2])}, got '
                             f'{tuple(self.labels.shape)}')
        checks = dict(image_index=(n,), class_index=(n,), boxes=(n, 4))
        for name, shape in checks.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f'{name} must be {shape}, got {tuple(value.shape)}')
        if self.mask_inputs is not None and (self.mask_inputs.ndim != 4
                                             or self.mask_inputs.shape[:2] != (n, 1)):
            raise ValueError(f'mask_inputs must be ({n}, 1, H, W), got '
                             f'{tuple(self.mask_inputs.shape)}')
        for name, value in self.extras.items():
            if value.shape[0] != n:
                raise ValueError(f'extras[{name!r}] has leading dim {value.shape[0]}, not {n}')

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_points(self) -> torch.Tensor:
        """``(N,)`` long: non-padding points of each prompt."""
        return (self.labels != -1).sum(dim=1)

    @property
    def has_box(self) -> torch.Tensor:
        """``(N,)`` bool: prompts with a box."""
        if self.boxes is None:
            return torch.zeros(len(self), dtype=torch.bool, device=self.points.device)
        return torch.isfinite(self.boxes).all(dim=1)

    def groups(self) -> list[torch.Tensor]:
        """Row indices of prompts with the same (point count, has box).

        SAM's prompt encoder appends one padding point when a prompt has no
        box, so prompts are decoded in groups that give every row the same
        number of sparse tokens; within a group, padding points are dropped.

        Returns:
            list[torch.Tensor]: ``(n_g,)`` long index tensors, together a partition of ``0..N-1``.
        """
        keys = self.num_points * 2 + self.has_box.long()
        return [torch.nonzero(keys == k).flatten() for k in keys.unique().tolist()]

    def group_inputs(self, rows: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor] | None,
                                                         torch.Tensor | None,
                                                         torch.Tensor | None]:
        """Prompt-encoder inputs of one group (see :meth:`groups`), padding dropped.

        Returns:
            tuple: ``points`` as ``((n, k, 2) coords, (n, k) labels)`` or ``None``
            when ``k = 0``; ``boxes`` ``(n, 4)`` or ``None``; ``mask_inputs``
            ``(n, 1, 4h, 4w)`` or ``None``.
        """
        count = int(self.num_points[rows[0]])
        keep = self.labels[rows] != -1
        points = None
        if count:
            coords = self.points[rows][keep].view(len(rows), count, 2)
            points = (coords if coords.is_floating_point() else coords.float(),
                      self.labels[rows][keep].view(len(rows), count))
        boxes = self.boxes[rows].float() if bool(self.has_box[rows[0]]) else None
        masks = None if self.mask_inputs is None else self.mask_inputs[rows].float()
        return points, boxes, masks
