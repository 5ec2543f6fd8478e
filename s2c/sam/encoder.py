"""Running SAM's image encoder: the one function behind the cache job and online CPM.

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

import numpy as np
import torch
from torch import nn

from s2c.structures import ImageFeatures

from .build import global_attn_indexes, sam_autocast
from .transforms import preprocess_image


def early_block_index(model: nn.Module, model_type: str | None = None) -> int:
    """Index of the first global-attention block of SAM's image encoder.

    Args:
        model: A ``Sam`` or its ``ImageEncoderViT``.
        model_type: When given, :func:`s2c.sam.build.global_attn_indexes` of it is
            used (vit_b 2, vit_l 5, vit_h 7; tiny 0) and checked against the model.

    Returns:
        int: Block index.

    Raises:
        ValueError: When the encoder has no global-attention block or the model
            does not match ``model_type``.
    """
    blocks = getattr(model, 'image_encoder', model).blocks
    if model_type is not None:
        idx = global_attn_indexes(model_type)[0]
        if idx >= len(blocks) or getattr(blocks[idx], 'window_size', 0) != 0:
            raise ValueError(f'model does not look like {model_type!r}: block {idx} of its '
                             f'{len(blocks)} ViT blocks is not a global-attention block')
        return int(idx)
    global_blocks = [i for i, b in enumerate(blocks) if getattr(b, 'window_size', 0) == 0]
    if not global_blocks:
        raise ValueError('the image encoder has no global-attention block (window_size == 0)')
    return global_blocks[0]


@torch.no_grad()
def encode_batch(image_encoder: nn.Module, batch: torch.Tensor, *,
                 early_block: int | None = None, autocast_dtype: str | None = None,
                 chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the image encoder on a preprocessed batch.

    Args:
        image_encoder: SAM's ``ImageEncoderViT`` (eval mode).
        batch: ``(B, 3, S, S)`` float32, normalised and padded as by
            :func:`s2c.sam.transforms.preprocess_image`, on any device (moved to
            the encoder's device).
        early_block: Index of the ViT block whose output to return too, or ``None``.
        autocast_dtype: ``None`` or ``'bf16'`` (CUDA only).
        chunk_size: Images per encoder call (the global attention of ViT-H holds
            ``B x heads x 4096 x 4096`` maps); ``None`` = all at once. The result
            does not depend on it.

    Returns:
        tuple: embeddings ``(B, 256, S/16, S/16)`` float32 and early features
        ``(B, S/16, S/16, C)`` float32 (``None`` when ``early_block`` is ``None``).

    Raises:
        ValueError: For fp16, or bf16 off CUDA (see :func:`~s2c.sam.build.sam_autocast`).
    """
    device = next(image_encoder.parameters()).device
    ctx = sam_autocast(device, autocast_dtype)  # raises for fp16 and for bf16 off CUDA
    step = chunk_size or max(1, batch.shape[0])
    embs, earlies = [], []
    handle = None
    if early_block is not None:
        def _hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            earlies.append(output.float())

        handle = image_encoder.blocks[early_block].register_forward_hook(_hook)
    try:
        for start in range(0, batch.shape[0], step):
            with ctx:
                x = batch[start:start + step].to(device=device, dtype=torch.float32)
                embs.append(image_encoder(x).float())
    finally:
        if handle is not None:
            handle.remove()
    early = torch.cat(earlies) if early_block is not None else None
    return torch.cat(embs), early


def encode_images(sam: nn.Module, images: Sequence[np.ndarray], *,
                  early_block: int | None = None,
                  autocast_dtype: str | None = None) -> ImageFeatures:
    """Preprocess images the way SAM does and encode them as one batch.

    Args:
        sam: A ``Sam`` model (eval mode).
        images: ``B`` RGB uint8 arrays ``(H, W, 3)`` (original frame; sizes may differ).
        early_block: ViT block whose output to return too (see
            :func:`early_block_index`), or ``None``.
        autocast_dtype: ``None`` or ``'bf16'`` (CUDA only).

    Returns:
        ImageFeatures: embeddings ``(B, 256, h', w')``, ``input_sizes``,
        ``original_sizes`` and ``early``, float32 on the model's device.

    Raises:
        ValueError: When an image is not ``(H, W, 3)`` uint8.
    """
    img_size = int(sam.image_encoder.img_size)
    device = next(sam.image_encoder.parameters()).device
    tensors, input_sizes, original_sizes = [], [], []
    for image in images:
        tensor, input_size = preprocess_image(image, img_size, device=device)
        tensors.append(tensor)
        input_sizes.append([int(input_size[0]), int(input_size[1])])
        original_sizes.append([int(image.shape[0]), int(image.shape[1])])
    emb, early = encode_batch(sam.image_encoder, torch.cat(tensors, 0), early_block=early_block,
                              autocast_dtype=autocast_dtype)
    return ImageFeatures(
        embeddings=emb, early=early, img_size=img_size,
        input_sizes=torch.tensor(input_sizes, dtype=torch.long, device=device).view(-1, 2),
        original_sizes=torch.tensor(original_sizes, dtype=torch.long, device=device).view(-1, 2))
