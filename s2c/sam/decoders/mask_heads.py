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


def upscale_image_tokens(decoder: MaskDecoder, keys: torch.Tensor,
                         embed_hw: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, C)`` image tokens -> ``(B, C / 8, 4h, 4w)`` upscaled mask features.

    Args:
        decoder: SAM's mask decoder (its ``output_upscaling``).
        keys: ``(B, h*w, C)`` image tokens of the two-way transformer.
        embed_hw: ``(h, w)`` of the image embedding.
    """
    b, _, c = keys.shape
    return decoder.output_upscaling(keys.transpose(1, 2).reshape(b, c, *embed_hw))


def hypernetwork_logits(hyper: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``(B, M, C')`` hypernetwork outputs @ ``(B, C', H, W)`` features -> ``(B, M, H, W)``."""
    b, c, h, w = features.shape
    return (hyper @ features.view(b, c, h * w)).view(b, hyper.shape[1], h, w)


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
    up = upscale_image_tokens(decoder, keys, embed_hw)
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in
                         enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    return hypernetwork_logits(hyper, up)
