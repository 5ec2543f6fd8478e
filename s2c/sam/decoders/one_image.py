"""SAM's mask decoder for many point prompts on ONE image, without repeating the image.

Used by the AMG (one image, many points) and, for several images at once, by
the vanilla prompt back-end (:func:`~s2c.sam.decoders.batched.decode_shared_image`:
the first block's shared work is done once per image, the later blocks are
batched over all prompts).

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
                           v: torch.Tensor, image_rows: list[torch.Tensor] | None = None
                           ) -> torch.Tensor:
    """Tokens ``q (B, T, C)`` attend to shared image tokens.

    ``k, v`` are ``(N, C)`` shared by all prompts, or ``(U, N, C)`` of ``U``
    images with ``image_rows`` (the prompt rows of each image); either way the
    image tokens are projected once per image.
    """
    qp = _split(att.q_proj(q), att.num_heads)  # (B, H, T, d)
    kp = _split(att.k_proj(k), att.num_heads)  # (H, N, d) or (U, H, N, d)
    vp = _split(att.v_proj(v), att.num_heads)
    scale = math.sqrt(qp.shape[-1])
    if image_rows is None:
        attn = torch.softmax(torch.einsum('bhtd,hnd->bhtn', qp, kp) / scale, dim=-1)
        return att.out_proj(_merge(torch.einsum('bhtn,hnd->bhtd', attn, vp)))
    out = qp.new_empty(qp.shape)
    for u, rows in enumerate(image_rows):
        attn = torch.softmax(torch.einsum('bhtd,hnd->bhtn', qp[rows], kp[u]) / scale, dim=-1)
        out[rows] = torch.einsum('bhtn,hnd->bhtd', attn, vp[u])
    return att.out_proj(_merge(out))


def _image_to_token_residual(att: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             residual: torch.Tensor,
                             image_rows: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``residual + attention(image tokens q -> tokens k, v)``, shape ``(B, N, C)``.

    ``q`` and ``residual`` are ``(N, C)`` when shared by all prompts, ``(U, N, C)``
    shared per image with ``image_rows`` (the prompt rows of each image), else
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
    elif image_rows is not None:  # shared per image: project once per image
        qp = att.q_proj(q).view(q.shape[0], -1, h, d)  # (U, N, H, d)
        logits = kp.new_empty(b, qp.shape[1], h, t)
        for u, rows in enumerate(image_rows):
            logits[rows] = torch.einsum('nhd,bhtd->bnht', qp[u], kp[rows])
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
    values_out = values_out.reshape(b, h * t, -1)
    if image_rows is None:
        residual = residual.expand(b, *residual.shape[-2:])
        return torch.baddbmm(residual, attn, values_out)
    out = values_out.new_empty(b, *residual.shape[-2:])
    for u, rows in enumerate(image_rows):
        out[rows] = torch.baddbmm(residual[u].expand(len(rows), -1, -1), attn[rows],
                                  values_out[rows])
    return out


def is_uniform_dense(dense: torch.Tensor) -> bool:
    """Whether a ``(B, C, h, w)`` dense prompt embedding is one ``C``-vector everywhere.

    True for segment-anything's "no mask" embedding (an expanded view: checked by
    its strides, no data read) and for any tensor equal to its first pixel
    broadcast; False as soon as one prompt has a mask input.
    """
    if dense.numel() == 0:
        return True
    if all(st == 0 for i, st in enumerate(dense.stride()) if i != 1 and dense.shape[i] > 1):
        return True
    return torch.equal(dense, dense[:1, :, :1, :1].expand_as(dense))


def decode_tokens(decoder: MaskDecoder, image_embedding: torch.Tensor,
                  image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                  image_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the two-way transformer for ``B`` prompts on one image (or a few).

    The image-side work of the first block is done once per image, never per
    prompt; the later blocks' image tokens differ per prompt and are batched
    over all ``B`` prompts.

    Args:
        decoder: SAM's mask decoder (its ``TwoWayTransformer`` is used).
        image_embedding: ``(1, C, h, w)`` image embedding (C = 256), or ``(U, C, h, w)``
            of ``U`` images with ``image_index``.
        image_pe: ``(1, C, h, w)`` dense positional encoding.
        sparse: ``(B, Np, C)`` sparse prompt embeddings (points, box corners).
        dense: ``(B, C, h, w)`` dense prompt embeddings; must be the same for
            every prompt and pixel (the "no mask" embedding).
        image_index: ``(B,)`` long: each prompt's image in ``image_embedding``;
            ``None`` = the one image.

    Returns:
        tuple: ``hs (B, 5 + Np, C)`` output tokens (IoU token first, then the
        4 mask tokens) and ``keys (B, h*w, C)`` the updated image tokens.

    Raises:
        ValueError: Mask inputs in ``dense``; several images without ``image_index``.
    """
    tr = decoder.transformer
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens[None].expand(sparse.shape[0], -1, -1), sparse], dim=1)
    no_mask = dense[:1, :, :1, :1]
    if not is_uniform_dense(dense):
        raise ValueError('decode_tokens supports point prompts only: the dense prompt embedding '
                         'must be the same "no mask" embedding for every prompt and pixel')
    if image_index is None and image_embedding.shape[0] != 1:
        raise ValueError(f'{image_embedding.shape[0]} image embeddings need an image_index')
    image_rows = None
    if image_index is None:
        x = (image_embedding[0] + no_mask[0]).flatten(1).t()  # (N, C), shared by all prompts
    else:  # (U, N, C), shared by the prompts of each image
        image_rows = [torch.nonzero(image_index == u).flatten()
                      for u in range(image_embedding.shape[0])]
        x = (image_embedding + no_mask).flatten(2).transpose(1, 2).contiguous()
    pe = image_pe[0].flatten(1).t()
    queries, keys = tokens, None
    for layer in tr.layers:
        # Image tokens + PE, used by both cross attentions of the block.
        kpe = x + pe if keys is None else keys + pe
        queries = token_self_attention(layer, queries, tokens)
        q = queries + tokens
        if keys is None:  # layer 1: image tokens identical for all prompts
            t2i = _token_to_shared_image(layer.cross_attn_token_to_image, q, kpe, x,
                                         image_rows)
        else:
            t2i = _token_to_image(layer.cross_attn_token_to_image, q, kpe, keys)
        queries = layer.norm2(queries + t2i)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + tokens
        shared = keys is None
        keys = layer.norm4(_image_to_token_residual(
            layer.cross_attn_image_to_token, kpe, q, queries, x if shared else keys,
            image_rows if shared else None))
        del kpe
    if keys is None:
        raise ValueError('the two-way transformer has no layers')
    q = queries + tokens
    queries = queries + _token_to_image(tr.final_attn_token_to_image, q, keys + pe, keys)
    return tr.norm_final_attn(queries), keys
