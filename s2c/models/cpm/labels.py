"""CPM's pseudo-label: the SAM masks of a batch composed into one label map per crop.

Official ``model_s2c.py`` 281-298 (confidence = per-pixel logit x mean CAM
inside the mask) and S2C section 3.3 (confidence = stability score x mean CAM).
"""
from __future__ import annotations

import torch

from s2c.sam.stability import stability_score
from s2c.structures import IGNORE_INDEX

#: How a mask's pixels are scored.
CONFIDENCE_MODES = ('logit_x_meancam', 'stability_x_meancam')


def compose_cpm_labels(logits: torch.Tensor, cams: torch.Tensor, image_index: torch.Tensor,
                       class_index: torch.Tensor, valid: torch.Tensor, num_classes: int,
                       confidence: str = 'logit_x_meancam',
                       masks: torch.Tensor | None = None) -> torch.Tensor:
    """CPM pseudo-labels from per-prompt mask logits in the crop frame.

    A prompt's mask is ``logits > 0`` (or the given ``masks``) on the crop's
    non-padding pixels; its
    confidence at a pixel is ``logit x mean CAM_c inside the mask`` (official
    code) or ``stability x mean CAM_c`` (paper), ``c`` the prompt's class. A
    pixel takes the class of highest confidence among the masks that cover it;
    pixels no mask covers (or whose best confidence is negative) are background.

    Args:
        logits: ``(N, H, W)`` mask logits of the N prompts (crop frame).
        cams: ``(B, C, H, W)`` normalised multi-scale CAMs in [0, 1].
        image_index: ``(N,)`` image of each prompt.
        class_index: ``(N,)`` 0-based class of each prompt; one prompt per
            present (image, class).
        valid: ``(B, H, W)`` bool non-padding pixels.
        num_classes: ``C``.
        confidence: ``'logit_x_meancam'`` or ``'stability_x_meancam'``.
        masks: Optional ``(N, H, W)`` bool masks made otherwise (e.g. SAM's
            output chain, official ``model_s2c.py`` 281); default ``logits > 0``.
            The confidence still comes from ``logits``.

    Returns:
        torch.Tensor: ``(B, H, W)`` long CPM target (:mod:`s2c.structures.label_spaces`):
        ``0..C-1`` classes, ``C`` background, 255 padding.

    Raises:
        ValueError: For an unknown ``confidence``.
    """
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f'confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}')
    b, _, h, w = cams.shape
    masks = (logits > 0 if masks is None else masks) & valid[image_index]
    cam_of_prompt = cams[image_index, class_index]  # (N, H, W)
    # mean over the mask's pixels, reduced as the official cam[mask].mean() (bit-equal sums);
    # an empty mask gives NaN and covers no pixel, so it never reaches the label
    mean_cam = torch.stack([cam[m].mean() for cam, m in zip(cam_of_prompt, masks)]) \
        if len(masks) else cams.new_zeros(0)
    if confidence == 'logit_x_meancam':
        conf = logits * mean_cam[:, None, None]
    else:  # an empty mask (NaN stability) covers no pixel: its confidence is never used
        stab = stability_score(logits, 0.0, 1.0, valid=valid[image_index])
        conf = (stab * mean_cam)[:, None, None].expand(-1, h, w)
    score = torch.full((b, num_classes, h, w), float('-inf'), device=logits.device)
    conf = torch.where(masks, conf, torch.full_like(conf, float('-inf')))
    score[image_index, class_index] = conf
    best, label = score.max(dim=1)
    label[best < 0] = num_classes
    label[~valid] = IGNORE_INDEX
    return label
