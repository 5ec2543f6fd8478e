"""SAM's mask decoder for prompts of several images in one call.

segment-anything's ``MaskDecoder.predict_masks`` repeats ONE image embedding
for all prompts (``repeat_interleave``). Two ways to pair every prompt ``n``
with ``image_embeddings[image_index[n]]``:

- :func:`decode_batched`: the embedding is gathered per prompt and the
  decoder's own modules (two-way transformer, upscaling, hypernetwork MLPs,
  IoU head) run in the order of ``segment_anything/modeling/mask_decoder.py``
  (PyPI 1.0) - the library's numbers, for points, boxes and mask inputs;
- :func:`decode_shared_image`: prompts are grouped by image and each group
  goes through the one-image decoder of :mod:`.one_image` (the AMG's), which
  never repeats the embedding and computes the image-side projections once
  per image; same function up to float32 re-association (logits within a
  few 1e-7), mask inputs not supported.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from segment_anything.modeling import MaskDecoder

from .guided import two_way_guided
from .mask_heads import predict_iou, predict_mask_logits
from .one_image import decode_tokens, is_uniform_dense


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


def decode_shared_image(decoder: MaskDecoder, image_embeddings: torch.Tensor,
                        image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                        image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`decode_batched` through the one-image (shared-embedding) decoder.

    The prompts' images are taken once each (``image_index.unique()``) and the
    two-way transformer runs with :func:`~s2c.sam.decoders.one_image.decode_tokens`
    (the AMG's decoder): the image embedding is not repeated per prompt, the
    first block's image-side projections run once per image, and attention is
    evaluated through the few tokens; then the output heads of :mod:`.mask_heads`.
    Equal to :func:`decode_batched` up to float32 re-association (tiny SAM: max
    abs logit difference < 4e-7, the same masks; tests/test_sam/test_backends.py).

    Args:
        decoder: SAM's mask decoder (vanilla: its ``TwoWayTransformer``).
        image_embeddings: ``(B, C, h, w)`` image embeddings.
        image_pe: ``(1, C, h, w)`` dense positional encoding.
        sparse: ``(N, T, C)`` sparse prompt embeddings (points and/or boxes).
        dense: ``(N, C, h, w)`` dense prompt embeddings; must be the "no mask"
            embedding (:func:`~s2c.sam.decoders.one_image.is_uniform_dense`).
        image_index: ``(N,)`` long: image of each prompt.

    Returns:
        tuple: ``(N, 4, 4h, 4w)`` low-res logits (index 0 single-mask output,
        1-3 multimask outputs) in the SAM input frame and ``(N, 4)`` predicted IoUs.

    Raises:
        ValueError: When ``dense`` holds mask inputs (use :func:`decode_batched`).
    """
    if not is_uniform_dense(dense):
        raise ValueError('decode_shared_image supports prompts without mask inputs only '
                         '(the dense embedding must be the "no mask" embedding); use '
                         'decode_batched')
    if len(sparse) == 0:
        side = 4 * image_embeddings.shape[-1]
        return sparse.new_zeros(0, 4, 4 * image_embeddings.shape[-2], side), sparse.new_zeros(0, 4)
    images, index = image_index.unique(return_inverse=True)
    one = len(images) == 1  # the AMG's single-image form
    hs, keys = decode_tokens(decoder, image_embeddings[images], image_pe, sparse,
                             dense[:1].expand(len(sparse), -1, -1, -1),  # no copy
                             None if one else index)
    logits = predict_mask_logits(decoder, hs, keys, tuple(image_embeddings.shape[-2:]))
    return logits, predict_iou(decoder, hs)
