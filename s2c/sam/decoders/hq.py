"""HQ-SAM's mask decoder (SysCV/sam-hq ``segment_anything/modeling/mask_decoder_hq.py``).

HQ-SAM keeps SAM's whole decoder and adds, under ``mask_decoder.`` in its
checkpoints (25 tensors), an output token and three small convolution stacks:

- ``hf_token`` ``(1, 256)``: a sixth output token (after the IoU token and the
  four mask tokens) that takes part in the two-way transformer, so HQ-SAM's
  four SAM channels are not vanilla SAM's;
- ``hf_mlp``: its hypernetwork MLP (256 -> 256 -> 256 -> 32);
- ``compress_vit_feat``: ``ConvT(C_vit, 256, 2) -> LayerNorm2d -> GELU ->
  ConvT(256, 32, 2)`` on the output of the first global-attention ViT block
  (``C_vit`` = 768 / 1024 / 1280 for vit_b / l / h);
- ``embedding_encoder``: ``ConvT(256, 64, 2) -> LayerNorm2d -> GELU -> ConvT(64, 32, 2)``
  on the image embedding;
- ``embedding_maskfeature``: ``Conv3x3(32, 64) -> LayerNorm2d -> GELU ->
  Conv3x3(64, 32)`` on SAM's upscaled mask features.

Per image (prompt-independent, :func:`hq_features`): ``embedding_encoder(embedding)
+ compress_vit_feat(early)``, ``(B, 32, 4h, 4w)`` (official ``forward`` 102-103).
Per prompt (:func:`decode_batched_hq`, official ``predict_masks`` 145-189): the
four SAM logits as in SAM; the HQ logit = ``hf_mlp(hq token) @
(embedding_maskfeature(upscaled) + hq_features)``. The IoU head keeps SAM's four
outputs: the HQ mask has no predicted IoU.
"""
from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from .batched import two_way_batched
from .mask_heads import hypernetwork_logits, predict_iou, upscale_image_tokens


class MaskDecoderHQ(MaskDecoder):
    """segment-anything's ``MaskDecoder`` plus HQ-SAM's parts under their official names.

    A HQ-SAM checkpoint's ``mask_decoder.*`` tensors load into it key for key.

    Args:
        vit_dim: Channel width of the ViT blocks (vit_b 768, vit_l 1024, vit_h 1280).
        transformer_dim: Decoder width (256).
        **kwargs: ``MaskDecoder`` arguments (``transformer``, ``num_multimask_outputs``,
            ``iou_head_depth``, ``iou_head_hidden_dim``).
    """

    def __init__(self, *, vit_dim: int, transformer_dim: int = 256, **kwargs) -> None:
        super().__init__(transformer_dim=transformer_dim, **kwargs)
        d = transformer_dim
        self.hf_token = nn.Embedding(1, d)
        self.hf_mlp = MLP(d, d, d // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, d, kernel_size=2, stride=2), LayerNorm2d(d), nn.GELU(),
            nn.ConvTranspose2d(d, d // 8, kernel_size=2, stride=2))
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2), LayerNorm2d(d // 4),
            nn.GELU(), nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2))
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(d // 8, d // 4, 3, 1, 1), LayerNorm2d(d // 4), nn.GELU(),
            nn.Conv2d(d // 4, d // 8, 3, 1, 1))


def hq_features(decoder: MaskDecoderHQ, embeddings: torch.Tensor,
                early: torch.Tensor) -> torch.Tensor:
    """Per-image HQ features (official ``mask_decoder_hq.py`` 102-103).

    Args:
        decoder: The HQ decoder.
        embeddings: ``(B, 256, h, w)`` image embeddings.
        early: ``(B, h, w, C_vit)`` output of the first global-attention ViT block
            (channels last).

    Returns:
        torch.Tensor: ``(B, 32, 4h, 4w)``.
    """
    return decoder.embedding_encoder(embeddings) + \
        decoder.compress_vit_feat(early.permute(0, 3, 1, 2))


def decode_batched_hq(decoder: MaskDecoderHQ, image_embeddings: torch.Tensor,
                      features_hq: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                      dense: torch.Tensor,
                      image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HQ-SAM's five mask outputs for ``N`` prompts over ``B`` images.

    Args:
        decoder: The HQ decoder.
        image_embeddings: ``(B, 256, h, w)`` image embeddings.
        features_hq: ``(B, 32, 4h, 4w)`` from :func:`hq_features`.
        image_pe: ``(1, 256, h, w)`` dense positional encoding.
        sparse: ``(N, T, 256)`` sparse prompt embeddings.
        dense: ``(N, 256, h, w)`` dense prompt embeddings.
        image_index: ``(N,)`` long: image of each prompt.

    Returns:
        tuple: ``(N, 5, 4h, 4w)`` low-res logits (SAM's ``single``, ``multi_0..2``,
        then ``hq``) and ``(N, 4)`` predicted IoUs of the four SAM outputs.
    """
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight,
                        decoder.hf_token.weight], dim=0)
    hs, keys = two_way_batched(decoder, image_embeddings, image_pe, sparse, dense, image_index,
                               tokens)
    up = upscale_image_tokens(decoder, keys, tuple(image_embeddings.shape[-2:]))
    num_sam = decoder.num_mask_tokens
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in
                         enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    logits_sam = hypernetwork_logits(hyper, up)
    up_hq = decoder.embedding_maskfeature(up) + features_hq[image_index]
    logits_hq = hypernetwork_logits(decoder.hf_mlp(hs[:, 1 + num_sam, :])[:, None], up_hq)
    return torch.cat([logits_sam, logits_hq], dim=1), predict_iou(decoder, hs)
