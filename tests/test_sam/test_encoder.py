"""SAM's image encoder: embeddings, the early block via a hook, chunking, precision."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from s2c.sam.build import build_sam
from s2c.sam.encoder import early_block_index, encode_batch, encode_images


@pytest.fixture(scope='module')
def tiny_sam():
    return build_sam('tiny', None, device='cpu', seed=0)


def test_encoder_hook_matches_running_the_blocks(tiny_sam):
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    idx = early_block_index(tiny_sam, 'tiny')
    emb, early = encode_batch(tiny_sam.image_encoder, x, early_block=idx)
    enc = tiny_sam.image_encoder
    with torch.no_grad():
        ref_emb = enc(x)
        h = enc.patch_embed(x)
        if enc.pos_embed is not None:
            h = h + enc.pos_embed
        for blk in enc.blocks[:idx + 1]:
            h = blk(h)
    assert emb.shape == (2, 256, 16, 16) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, ref_emb)
    torch.testing.assert_close(early, h)
    assert early.shape[:3] == (2, 16, 16)
    with pytest.raises(ValueError, match='fp16'):
        encode_batch(tiny_sam.image_encoder, x, autocast_dtype='fp16')
    with pytest.raises(ValueError, match='CUDA'):
        encode_batch(tiny_sam.image_encoder, x, autocast_dtype='bf16')
    # chunked encoding gives the same result
    emb2, early2 = encode_batch(tiny_sam.image_encoder, x, early_block=idx, chunk_size=1)
    torch.testing.assert_close(emb2, emb)
    torch.testing.assert_close(early2, early)


def test_encode_images_returns_image_features(tiny_sam):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
              rng.integers(0, 256, (50, 20, 3), dtype=np.uint8)]
    feats = encode_images(tiny_sam, images)
    assert feats.embeddings.shape == (2, 256, 16, 16) and feats.early is None
    assert feats.input_sizes.tolist() == [[192, 256], [256, 102]]
    assert feats.original_sizes.tolist() == [[30, 40], [50, 20]] and feats.img_size == 256
    with pytest.raises(ValueError, match='uint8'):
        encode_images(tiny_sam, [images[0].astype(np.float32)])
