"""SAM's mask decoder for many point prompts on ONE image, without repeating the image.

segment-anything's ``MaskDecoder.predict_masks`` copies the image embedding
once per prompt (``repeat_interleave``) and runs every image-side projection
of the two-way transformer on all copies. With few tokens per prompt
(1 IoU + 4 mask + 2 point tokens = 7) most of that work can be reorganised:

- layer 1 sees the same image tokens for every prompt, so its image-side
  projections (token->image keys/values, image->token queries) are computed
  once;
- an attention whose other side has only T = 7 tokens is evaluated through
  the token side: with ``q_i = Wq x_i + bq`` and ``k_t = Wk y_t + bk``,
  ``q_i . k_t = x_i . (Wq^T k_t) + bq . k_t``, and since softmax weights sum
  to 1, ``sum_t a_it (Wo v_t) + bo = Wo (sum_t a_it v_t) + bo``; likewise for
  the token->image direction (``sum_n a_tn (Wv x_n + bv) = Wv (sum_n a_tn x_n)
  + bv``). The per-pixel cost drops from ``C x C_int`` to ``H x T x C``
  multiply-adds per projection pair;
- the (expensive) mask upscaling runs only for the prompts a caller asks for
  (e.g. those with a mask that passes the predicted-IoU filter).

This is the same function as ``MaskDecoder.forward(..., multimask_output)``
up to float32 re-association (relative differences ~1e-6 in the logits);
the tests check it against the module. The token-side
layers (self-attention, MLPs, LayerNorms, IoU head, hypernetworks) are the
module's own layers. Only point prompts without a mask prompt are supported
(the dense prompt embedding is the "no mask" embedding), as in AMG.
Formulas: ``segment_anything/modeling/transformer.py`` and
``mask_decoder.py`` (PyPI 1.0).
"""
from __future__ import annotations

import math

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention

from .mask_heads import token_self_attention


def _heads(att: Attention, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``(H, d, C)`` and bias ``(H, d)`` of ``att.<which>_proj`` split by head."""
    lin = getattr(att, f'{which}_proj')
    h = att.num_heads
    return lin.weight.view(h, -1, lin.weight.shape[1]), lin.bias.view(h, -1)


def _split(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(..., T, H*d)`` -> ``(..., H, T, d)``."""
    *lead, t, c = x.shape
    return x.view(*lead, t, num_heads, c // num_heads).transpose(-3, -2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, d)`` -> ``(B, T, H*d)``."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def _token_to_image(att: Attention, q: torch.Tensor, k: torch.Tensor,
                    v: torch.Tensor) -> torch.Tensor:
    """Tokens ``q (B, T, C)`` attend to per-prompt image tokens ``k, v (B, N, C)``."""
    qp = _split(att.q_proj(q), att.num_heads)  # (B, H, T, d)
    b, h, t, d = qp.shape
    qp = qp * (1.0 / math.sqrt(d))
    wk, bk = _heads(att, 'k')
    # Query pulled back to image channels: q . (Wk x + bk) = (Wk^T q) . x + q . bk
    q_img = torch.einsum('bhtd,hdc->bhtc', qp, wk).reshape(b, h * t, -1)
    q_bias = torch.einsum('bhtd,hd->bht', qp, bk).reshape(b, h * t, 1)
    attn = torch.softmax(torch.baddbmm(q_bias, q_img, k.transpose(1, 2)), dim=-1)  # (B, HT, N)
    pooled = torch.bmm(attn, v).view(b, h, t, -1)  # attention-weighted image tokens
    wv, bv = _heads(att, 'v')
    out = torch.einsum('bhtc,hdc->bhtd', pooled, wv) + bv[None, :, None, :]
    return att.out_proj(_merge(out))


def _token_to_shared_image(att: Attention, q: torch.Tensor, k: torch.Tensor,
                           v: torch.Tensor) -> torch.Tensor:
    """Tokens ``q (B, T, C)`` attend to image tokens ``k, v (N, C)`` shared by all prompts."""
    qp = _split(att.q_proj(q), att.num_heads)  # (B, H, T, d)
    kp = _split(att.k_proj(k), att.num_heads)  # (H, N, d)
    vp = _split(att.v_proj(v), att.num_heads)
    attn = torch.softmax(torch.einsum('bhtd,hnd->bhtn', qp, kp) / math.sqrt(qp.shape[-1]),
                         dim=-1)
    return att.out_proj(_merge(torch.einsum('bhtn,hnd->bhtd', attn, vp)))


def _image_to_token_residual(att: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             residual: torch.Tensor) -> torch.Tensor:
    """``residual + attention(image tokens q -> tokens k, v)``, shape ``(B, N, C)``.

    ``q`` and ``residual`` are ``(N, C)`` when shared by all prompts, else
    ``(B, N, C)``; ``k, v`` are ``(B, T, C)``.
    """
    h = att.num_heads
    kp = _split(att.k_proj(k), h)  # (B, H, T, d)
    vp = _split(att.v_proj(v), h)
    b, _, t, d = kp.shape
    kp = kp * (1.0 / math.sqrt(d))
    if q.dim() == 2:  # shared queries: project once
        qp = att.q_proj(q).view(-1, h, d)  # (N, H, d)
        logits = torch.einsum('nhd,bhtd->bnht', qp, kp)
    else:  # q . (Wq x + bq) = x . (Wq^T k) + bq . k
        wq, bq = _heads(att, 'q')
        k_img = torch.einsum('bhtd,hdc->bhtc', kp, wq).reshape(b, h * t, -1)
        k_bias = torch.einsum('bhtd,hd->bht', kp, bq).reshape(b, 1, h * t)
        logits = torch.baddbmm(k_bias, q, k_img.transpose(1, 2)).view(b, -1, h, t)
    attn = torch.softmax(logits, dim=-1).reshape(b, -1, h * t)  # (B, N, H*T)
    # out_proj folded into the values: sum_t a_t (Wo_h v_t) + bo, bo split over the H heads
    # (each head's weights sum to 1).
    wo = att.out_proj.weight.view(-1, h, d)  # (C, H, d)
    values_out = torch.einsum('bhtd,chd->bhtc', vp, wo) + att.out_proj.bias / h
    residual = residual.expand(b, *residual.shape[-2:])
    return torch.baddbmm(residual, attn, values_out.reshape(b, h * t, -1))


def decode_tokens(decoder: MaskDecoder, image_embedding: torch.Tensor,
                  image_pe: torch.Tensor, sparse: torch.Tensor,
                  dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the two-way transformer for ``B`` prompts on one image.

    Args:
        decoder: SAM's mask decoder (its ``TwoWayTransformer`` is used).
        image_embedding: ``(1, C, h, w)`` image embedding (C = 256).
        image_pe: ``(1, C, h, w)`` dense positional encoding.
        sparse: ``(B, Np, C)`` sparse prompt embeddings (points).
        dense: ``(B, C, h, w)`` dense prompt embeddings; must be the same for
            every prompt and pixel (the "no mask" embedding).

    Returns:
        tuple: ``hs (B, 5 + Np, C)`` output tokens (IoU token first, then the
        4 mask tokens) and ``keys (B, h*w, C)`` the updated image tokens.
    """
    tr = decoder.transformer
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens[None].expand(sparse.shape[0], -1, -1), sparse], dim=1)
    no_mask = dense[:1, :, :1, :1]
    if any(st != 0 for i, st in enumerate(dense.stride()) if i != 1 and dense.shape[i] > 1) \
            and not torch.equal(dense, no_mask.expand_as(dense)):
        raise ValueError('decode_tokens supports point prompts only: the dense prompt embedding '
                         'must be the same "no mask" embedding for every prompt and pixel')
    x = (image_embedding[0] + no_mask[0]).flatten(1).t()  # (N, C), shared by all prompts
    pe = image_pe[0].flatten(1).t()
    queries, keys = tokens, None
    for layer in tr.layers:
        # Image tokens + PE, used by both cross attentions of the block.
        kpe = x + pe if keys is None else keys + pe
        queries = token_self_attention(layer, queries, tokens)
        q = queries + tokens
        if keys is None:  # layer 1: image tokens identical for all prompts
            t2i = _token_to_shared_image(layer.cross_attn_token_to_image, q, kpe, x)
        else:
            t2i = _token_to_image(layer.cross_attn_token_to_image, q, kpe, keys)
        queries = layer.norm2(queries + t2i)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + tokens
        keys = layer.norm4(_image_to_token_residual(layer.cross_attn_image_to_token, kpe, q,
                                                    queries, x if keys is None else keys))
        del kpe
    if keys is None:
        raise ValueError('the two-way transformer has no layers')
    q = queries + tokens
    queries = queries + _token_to_image(tr.final_attn_token_to_image, q, keys + pe, keys)
    return tr.norm_final_attn(queries), keys
