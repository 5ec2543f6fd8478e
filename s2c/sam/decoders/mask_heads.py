"""Shared pieces of SAM's mask decoder: the output heads applied to the two-way
transformer's outputs, and the token self-attention step of a two-way block.

Shared by the one-image AMG decoder (:mod:`.one_image`), the multi-image
batched decoder (:mod:`.batched`) and the decoders of the variants. Formulas of
``MaskDecoder.predict_masks`` and ``TwoWayAttentionBlock.forward``
(``segment_anything/modeling/``, PyPI 1.0).
"""
from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder
from torch import nn


def predict_iou(decoder: MaskDecoder, hs: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` predicted IoUs of the 4 mask tokens (index 0 = single-mask output).

    Args:
        decoder: SAM's mask decoder.
        hs: ``(B, T, C)`` output tokens (IoU token first, then the 4 mask tokens).
    """
    return decoder.iou_prediction_head(hs[:, 0, :])


def token_self_attention(layer: nn.Module, queries: torch.Tensor,
                         query_pe: torch.Tensor) -> torch.Tensor:
    """First step of ``TwoWayAttentionBlock.forward``: token self-attention, then ``norm1``.

    Args:
        layer: A two-way attention block.
        queries: ``(B, T, C)`` tokens.
        query_pe: ``(B, T, C)`` their positional encoding (skipped in the first block).
    """
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    return layer.norm1(queries)


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
