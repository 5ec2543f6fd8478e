"""SAM's promptable training objective (Kirillov et al., "Segment Anything", ICCV 2023,
Sec. 3 and App. A): prompts sampled from a ground-truth mask, focal + dice mask loss with the
loss taken on the best of the multimask outputs for an ambiguous (one-point) prompt, and the
IoU head regressed to the true IoU. Used to train the demo's class-agnostic SAM."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import sigmoid_focal_loss

#: Weights of the mask loss (SAM App. A: focal 20 : dice 1) and of the IoU-head MSE.
FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


@dataclass
class Prompt:
    """One training prompt in the SAM input frame (pixels, ``x, y`` order).

    Attributes:
        points: ``(P, 2)`` float32 positive points, or ``None``.
        box: ``(4,)`` float32 ``x0, y0, x1, y1``, or ``None``.
    """

    points: np.ndarray | None = None
    box: np.ndarray | None = None


def sample_points(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` positive points drawn uniformly from the pixels of ``mask``.

    Args:
        mask: ``(H, W)`` bool object mask (input frame).
        k: Number of points.
        rng: Random generator.

    Returns:
        np.ndarray: ``(k, 2)`` float32 ``(x, y)`` pixel centres.

    Raises:
        ValueError: When the mask is empty.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError('cannot sample points from an empty mask')
    idx = rng.integers(0, ys.size, size=k)
    return np.stack([xs[idx] + 0.5, ys[idx] + 0.5], axis=1).astype(np.float32)


def sample_box(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> np.ndarray:
    """The mask's bounding box with each side moved by up to ``jitter`` x its side length
    (SAM App. A: noise of std 10 % of the side, at most 20 px; here uniform, clipped).

    Returns:
        np.ndarray: ``(4,)`` float32 ``x0, y0, x1, y1`` (input frame).
    """
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = x1 - x0, y1 - y0
    noise = rng.uniform(-jitter, jitter, size=4) * np.array([w, h, w, h])
    box = np.array([x0, y0, x1, y1], np.float32) + noise
    box[[0, 2]] = box[[0, 2]].clip(0, mask.shape[1])
    box[[1, 3]] = box[[1, 3]].clip(0, mask.shape[0])
    return box.astype(np.float32)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Soft dice loss per mask, ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` over valid pixels.

    Args:
        logits: ``(N, K, H, W)``.
        target: ``(N, 1, H, W)`` in {0, 1}.
        valid: ``(N, 1, H, W)`` bool (inside the image, not padding).

    Returns:
        torch.Tensor: ``(N, K)``.
    """
    p = logits.sigmoid() * valid
    t = target * valid
    inter = (p * t).flatten(2).sum(-1)
    return 1 - (2 * inter + 1) / (p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + 1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss (torchvision, alpha 0.25, gamma 2) averaged over valid pixels.

    Returns:
        torch.Tensor: ``(N, K)``.
    """
    loss = sigmoid_focal_loss(logits, target.expand_as(logits), reduction='none') * valid
    return loss.flatten(2).sum(-1) / valid.flatten(2).sum(-1).clamp_min(1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of each thresholded mask (logit > 0) with the target over valid pixels: ``(N, K)``."""
    pred = (logits > 0) & valid
    t = (target > 0.5) & valid
    inter = (pred & t).flatten(2).sum(-1).float()
    union = (pred | t).flatten(2).sum(-1).float()
    return inter / union.clamp_min(1)


def promptable_loss(logits: torch.Tensor, pred_iou: torch.Tensor, target: torch.Tensor,
                    valid: torch.Tensor, multimask: bool) -> dict[str, torch.Tensor]:
    """SAM's objective for one batch of prompts.

    Args:
        logits: ``(N, 4, H, W)`` mask logits in the padded input frame (output 0 = single
            mask, 1-3 = multimask).
        pred_iou: ``(N, 4)`` IoU-head predictions.
        target: ``(N, 1, H, W)`` ground-truth masks.
        valid: ``(N, 1, H, W)`` bool, False on padding.
        multimask: Ambiguous prompts (one point): the mask loss is the minimum over outputs
            1-3; otherwise output 0 is trained.

    Returns:
        dict: ``loss_mask`` (focal x 20 + dice of the trained output), ``loss_iou`` (MSE of
        the IoU head on every output against its true IoU) and ``iou`` (true IoU of the
        trained output, no grad).
    """
    per_mask = (FOCAL_WEIGHT * focal_loss(logits, target, valid)
                + DICE_WEIGHT * dice_loss(logits, target, valid))
    if multimask:
        loss, best = per_mask[:, 1:].min(dim=1)
        best = best + 1
    else:
        loss, best = per_mask[:, 0], torch.zeros(len(per_mask), dtype=torch.long,
                                                 device=logits.device)
    with torch.no_grad():
        true_iou = mask_iou(logits, target, valid)
    loss_iou = IOU_WEIGHT * torch.nn.functional.mse_loss(pred_iou, true_iou)
    iou = true_iou.gather(1, best[:, None]).squeeze(1)
    return dict(loss_mask=loss.mean(), loss_iou=loss_iou, iou=iou.mean())
