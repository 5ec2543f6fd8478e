"""Running SAM's image encoder on images: embeddings and early ViT features.

The image encoder (``segment_anything.modeling.ImageEncoderViT``) maps a
preprocessed ``(B, 3, S, S)`` batch (``S = img_size``: 1024 for vit_b/l/h) to the
image embedding ``(B, 256, S/16, S/16)``. HQ-SAM and RobustSAM also need the
output of the first global-attention ViT block, ``(B, S/16, S/16, C)`` channels
last (vit_b block 2, vit_l 5, vit_h 7; SysCV/sam-hq and robustsam/RobustSAM
collect the blocks whose ``window_size == 0``). We take it with a forward hook on
that block, so the encoder runs exactly once and unchanged.

Compute is float32. ``autocast_dtype='bf16'`` runs the encoder under
``torch.autocast('cuda', dtype=torch.bfloat16)`` (CUDA only; outputs are
returned as float32), through :func:`s2c.sam.build.sam_autocast`. float16 is
refused: the ViT-H encoder is known to produce garbage (overflow) in fp16.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .build import sam_autocast
from .transforms import preprocess_image


@dataclass
class EncodedImages:
    """Encoder outputs of a batch.

    Attributes:
        embeddings: ``(B, 256, h', w')`` float32 image embeddings.
        early: ``(B, h', w', C)`` float32 output of the first global-attention
            block, or ``None`` when not asked for.
        input_sizes: ``B`` pairs ``(h, w)``: image size after SAM's resize (SAM
            input frame, before padding).
        original_sizes: ``B`` pairs ``(H, W)``: original image sizes.
    """

    embeddings: torch.Tensor
    early: torch.Tensor | None
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


def early_block_index(sam: torch.nn.Module, model_type: str | None = None) -> int:
    """Index of the first global-attention block of SAM's image encoder.

    Args:
        sam: A ``Sam`` model.
        model_type: When given, :func:`s2c.sam.build.global_attn_indexes` of it is
            used (vit_b 2, vit_l 5, vit_h 7) and checked against the model.

    Returns:
        int: Block index.

    Raises:
        ValueError: When the encoder has no global-attention block or the model
            does not match ``model_type``.
    """
    blocks = sam.image_encoder.blocks
    global_blocks = [i for i, b in enumerate(blocks) if getattr(b, 'window_size', 0) == 0]
    if model_type is not None:
        from .build import global_attn_indexes

        idx = tuple(global_attn_indexes(model_type))
        if idx:
            if idx[0] >= len(blocks) or getattr(blocks[idx[0]], 'window_size', 0) != 0:
                raise ValueError(f'model does not look like {model_type!r}: block {idx[0]} of its '
                                 f'{len(blocks)} ViT blocks is not a global-attention block')
            return int(idx[0])
    if not global_blocks:
        raise ValueError('the image encoder has no global-attention block (window_size == 0)')
    return global_blocks[0]


@torch.no_grad()
def encode_batch(sam: torch.nn.Module, batch: torch.Tensor, *, early_block: int | None = None,
                 autocast_dtype: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the image encoder on a preprocessed batch.

    Args:
        sam: A ``Sam`` model (eval mode).
        batch: ``(B, 3, S, S)`` float32, normalised and padded as by
            :func:`s2c.sam.transforms.preprocess_image`, on any device (moved to
            the model's device).
        early_block: Index of the ViT block whose output to return too, or ``None``.
        autocast_dtype: ``None`` or ``'bf16'`` (CUDA only).

    Returns:
        tuple: embeddings ``(B, 256, S/16, S/16)`` float32 and early features
        ``(B, S/16, S/16, C)`` float32 (``None`` when ``early_block`` is ``None``).
    """
    encoder = sam.image_encoder
    device = next(encoder.parameters()).device
    captured: dict[str, torch.Tensor] = {}
    handle = None
    if early_block is not None:
        def _hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured['early'] = output

        handle = encoder.blocks[early_block].register_forward_hook(_hook)
    ctx = sam_autocast(device, autocast_dtype)  # raises for fp16 and for bf16 off CUDA
    try:
        with ctx:
            emb = encoder(batch.to(device=device, dtype=torch.float32))
    finally:
        if handle is not None:
            handle.remove()
    early = captured['early'].float() if early_block is not None else None
    return emb.float(), early


def encode_images(sam: torch.nn.Module, images: Sequence[np.ndarray], *,
                  early_block: int | None = None,
                  autocast_dtype: str | None = None) -> EncodedImages:
    """Preprocess images the way SAM does and encode them as one batch.

    Args:
        sam: A ``Sam`` model (eval mode).
        images: ``B`` RGB uint8 arrays ``(H, W, 3)`` (sizes may differ).
        early_block: ViT block whose output to return too (see
            :func:`early_block_index`), or ``None``.
        autocast_dtype: ``None`` or ``'bf16'`` (CUDA only).

    Returns:
        EncodedImages: Embeddings ``(B, 256, h', w')`` etc., float32 on the model's
        device.
    """
    img_size = int(sam.image_encoder.img_size)
    device = next(sam.image_encoder.parameters()).device
    tensors, input_sizes, original_sizes = [], [], []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected an RGB uint8 image (H, W, 3), got {image.dtype} '
                             f'{image.shape}')
        tensor, input_size = preprocess_image(image, img_size, device=device)
        tensors.append(tensor)
        input_sizes.append((int(input_size[0]), int(input_size[1])))
        original_sizes.append((int(image.shape[0]), int(image.shape[1])))
    emb, early = encode_batch(sam, torch.cat(tensors, 0), early_block=early_block,
                              autocast_dtype=autocast_dtype)
    return EncodedImages(emb, early, input_sizes, original_sizes)


def encode_image(sam: torch.nn.Module, image: np.ndarray, *, early_block: int | None = None,
                 autocast_dtype: str | None = None) -> EncodedImages:
    """:func:`encode_images` for one image (``B = 1``)."""
    return encode_images(sam, [image], early_block=early_block, autocast_dtype=autocast_dtype)
