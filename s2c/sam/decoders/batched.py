"""SAM's mask decoder for prompts of several images in one call.

segment-anything's ``MaskDecoder.predict_masks`` repeats ONE image embedding
for all prompts (``repeat_interleave``). Here every prompt ``n`` is paired
with ``image_embeddings[image_index[n]]``; the rest is the decoder's own
modules (two-way transformer, upscaling, hypernetwork MLPs, IoU head) in the
order of ``segment_anything/modeling/mask_decoder.py`` (PyPI 1.0).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from segment_anything.modeling import MaskDecoder

from .guided import two_way_guided
from .mask_heads import predict_iou, predict_mask_logits


def two_way_batched(decoder: MaskDecoder, image_embeddings: torch.Tensor,
                    image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                    image_index: torch.Tensor, output_tokens: torch.Tensor,
                    guidance: Mapping[str, Any] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-way transformer for ``N`` prompts, each paired with its own image.

    Args:
        decoder: SAM's mask decoder (or a variant's).
        image_embeddings: ``(B, C, h, w)`` image embeddings.
        image_pe: ``(1, C, h, w)`` dense positional encoding.
        sparse: ``(N, T, C)`` sparse prompt embeddings.
        dense: ``(N, C, h, w)`` dense prompt embeddings.
        image_index: ``(N,)`` long: image of each prompt.
        output_tokens: ``(K, C)`` output tokens put before the prompt tokens
            (SAM: the IoU token and the 4 mask tokens).
        guidance: PerSAM's per-prompt ``attn_sim`` / ``target_embedding`` /
            ``te_alias`` (:func:`~s2c.sam.decoders.guided.two_way_guided`), or ``None``.

    Returns:
        tuple: ``(N, K + T, C)`` output tokens and ``(N, h*w, C)`` image tokens.
    """
    n = sparse.shape[0]
    tokens = torch.cat([output_tokens[None].expand(n, -1, -1), sparse], dim=1)
    src = image_embeddings[image_index] + dense
    pos = image_pe.expand(n, -1, -1, -1)
    if guidance:
        return two_way_guided(decoder.transformer, src, pos, tokens, **guidance)
    return decoder.transformer(src, pos, tokens)


def decode_batched(decoder: MaskDecoder, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                   sparse: torch.Tensor, dense: torch.Tensor, image_index: torch.Tensor,
                   guidance: Mapping[str, Any] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """All four mask outputs for ``N`` prompts over ``B`` images.

    Args:
        decoder: SAM's mask decoder.
        image_embeddings: ``(B, C, h, w)`` image embeddings.
        image_pe: ``(1, C, h, w)`` dense positional encoding (``prompt_encoder.get_dense_pe()``).
        sparse: ``(N, T, C)`` sparse prompt embeddings.
        dense: ``(N, C, h, w)`` dense prompt embeddings.
        image_index: ``(N,)`` long: image of each prompt.
        guidance: PerSAM's target guidance (see :func:`two_way_batched`) or ``None``.

    Returns:
        tuple: ``(N, 4, 4h, 4w)`` low-res logits (index 0 single-mask output,
        1-3 multimask outputs) and ``(N, 4)`` predicted IoUs.
    """
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    hs, keys = two_way_batched(decoder, image_embeddings, image_pe, sparse, dense, image_index,
                               tokens, guidance)
    logits = predict_mask_logits(decoder, hs, keys, tuple(image_embeddings.shape[-2:]))
    return logits, predict_iou(decoder, hs)
