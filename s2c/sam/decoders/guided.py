"""PerSAM's target guidance inside SAM's two-way transformer (ZrrSkywalker/Personalize-SAM
``per_segment_anything/modeling/transformer.py``).

Two additions to segment-anything's ``TwoWayTransformer``, computed here with its own
modules (no weights are added):

- **target-guided attention** (``transformer.py`` 226-245): in the token-to-image
  cross-attention of BOTH two-way blocks (not the final attention),
  ``attn = softmax(softmax(q k^T / sqrt(d)) + attn_sim)``, where ``attn_sim`` is
  a per-prompt ``(h*w,)`` map in (0, 1) broadcast over heads and tokens;
- **target-semantic prompting** (``transformer.py`` 90-110): the target embedding
  is added to the queries before each block and to the final attention's
  queries. The authors write ``queries += target_embedding`` while ``queries``
  is still the very tensor passed as the query positional encoding, so before
  block 0 the positional encoding is shifted too, for every later use, and the
  final queries get the embedding twice. ``te_alias='official'`` reproduces
  that; ``'clean'`` adds it once per block and once at the end. Caller tensors
  are never modified.
"""
from __future__ import annotations

import math

import torch
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer

from .mask_heads import token_self_attention

#: How the target embedding is added (see the module docstring).
TE_ALIAS_MODES = ('official', 'clean')


def guided_attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     attn_sim: torch.Tensor | None = None) -> torch.Tensor:
    """segment-anything's ``Attention`` with PerSAM's optional re-softmax over ``+ attn_sim``.

    Args:
        attn: The attention module (its projections and head count).
        q: ``(B, Nq, C)`` queries.
        k: ``(B, Nk, C)`` keys.
        v: ``(B, Nk, C)`` values.
        attn_sim: ``(B, 1, 1, Nk)`` guidance or ``None`` (plain attention).

    Returns:
        torch.Tensor: ``(B, Nq, C)``.
    """
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    weights = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
    if attn_sim is not None:
        weights = torch.softmax(weights + attn_sim, dim=-1)
    return attn.out_proj(attn._recombine_heads(weights @ v))


def _guided_block(block: TwoWayAttentionBlock, queries: torch.Tensor, keys: torch.Tensor,
                  query_pe: torch.Tensor, key_pe: torch.Tensor,
                  attn_sim: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` with guidance in its token-to-image attention."""
    queries = token_self_attention(block, queries, query_pe)
    queries = block.norm2(queries + guided_attention(
        block.cross_attn_token_to_image, queries + query_pe, keys + key_pe, keys, attn_sim))
    queries = block.norm3(queries + block.mlp(queries))
    q, k = queries + query_pe, keys + key_pe
    keys = block.norm4(keys + block.cross_attn_image_to_token(q=k, k=q, v=queries))
    return queries, keys


def two_way_guided(transformer: TwoWayTransformer, image_embedding: torch.Tensor,
                   image_pe: torch.Tensor, point_embedding: torch.Tensor,
                   attn_sim: torch.Tensor | None = None,
                   target_embedding: torch.Tensor | None = None,
                   te_alias: str = 'official') -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's two-way transformer with PerSAM's target guidance.

    Args:
        transformer: segment-anything's ``TwoWayTransformer``.
        image_embedding: ``(N, C, h, w)``.
        image_pe: ``(N, C, h, w)``.
        point_embedding: ``(N, T, C)`` output + prompt tokens.
        attn_sim: ``(N, 1, 1, h*w)`` target-guided attention, or ``None``.
        target_embedding: ``(N, 1, C)`` target-semantic prompt, or ``None``.
        te_alias: ``'official'`` or ``'clean'`` (module docstring).

    Returns:
        tuple: ``(N, T, C)`` queries and ``(N, h*w, C)`` keys.

    Raises:
        ValueError: For an unknown ``te_alias``.
    """
    if te_alias not in TE_ALIAS_MODES:
        raise ValueError(f'te_alias must be one of {TE_ALIAS_MODES}, got {te_alias!r}')
    keys = image_embedding.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    queries, query_pe = point_embedding, point_embedding
    for i, layer in enumerate(transformer.layers):
        if target_embedding is not None:
            queries = queries + target_embedding
            if i == 0 and te_alias == 'official':
                query_pe = queries  # the authors' in-place += also shifts the positional encoding
        queries, keys = _guided_block(layer, queries, keys, query_pe, key_pe, attn_sim)
    q = queries + query_pe
    if target_embedding is not None:
        q = q + target_embedding
    queries = transformer.norm_final_attn(
        queries + transformer.final_attn_token_to_image(q=q, k=keys + key_pe, v=keys))
    return queries, keys
