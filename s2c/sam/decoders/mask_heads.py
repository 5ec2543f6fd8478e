"""The output heads of SAM's mask decoder, applied to the two-way transformer's outputs.

Shared by the one-image AMG decoder (:mod:`.one_image`) and the multi-image
batched decoder (:mod:`.batched`). Formulas of ``MaskDecoder.predict_masks``
(``segment_anything/modeling/mask_decoder.py``, PyPI 1.0).
"""
from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder


def predict_iou(decoder: MaskDecoder, hs: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` predicted IoUs of the 4 mask tokens (index 0 = single-mask output).

    Args:
        decoder: SAM's mask decoder.
        hs: ``(B, T, C)`` output tokens (IoU token first, then the 4 mask tokens).
    """
    return decoder.iou_prediction_head(hs[:, 0, :])


def predict_mask_logits(decoder: MaskDecoder, hs: torch.Tensor, keys: torch.Tensor,
                        embed_hw: tuple[int, int]) -> torch.Tensor:
    """Low-res mask logits ``(B, 4, 4h, 4w)`` of the prompts in ``hs``/``keys``.

    Args:
        decoder: SAM's mask decoder.
        hs: ``(B, T, C)`` output tokens of the two-way transformer (a subset of
            prompts may be passed).
        keys: ``(B, h*w, C)`` matching image tokens.
        embed_hw: ``(h, w)`` of the image embedding.

    Returns:
        torch.Tensor: Logits over the padded SAM input frame at ``img_size / 4``.
    """
    b, n, c = keys.shape
    src = keys.transpose(1, 2).reshape(b, c, *embed_hw)
    up = decoder.output_upscaling(src)
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in
                         enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    bu, cu, hu, wu = up.shape
    return (hyper @ up.view(bu, cu, hu * wu)).view(bu, hyper.shape[1], hu, wu)
