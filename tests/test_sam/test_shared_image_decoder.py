"""The shared-image decoder of the vanilla back-end (CPM's decode) against the per-prompt path:
several images, a varying number of prompts and points per image, boxes; the same logits up
to float32 re-association (max abs < 4e-7) and the same selected masks."""
from __future__ import annotations

import pytest
import torch

from s2c.sam.backends import SamPromptBackend, select_masks
from s2c.sam.build import build_sam
from s2c.sam.decoders import decode_batched, decode_shared_image
from s2c.structures import ImageFeatures, PromptBatch

#: Max abs logit difference allowed between the two paths (the issue's bound).
LOGIT_ATOL = 4e-7


@pytest.fixture(scope='module')
def tiny_sam():
    return build_sam('tiny', None, device='cpu', seed=0)


def _random_prompts(g: torch.Generator, counts: list[int], num_points: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``counts[i]`` prompts of ``num_points`` positive/negative points on image ``i``."""
    index = torch.cat([torch.full((c,), i, dtype=torch.long) for i, c in enumerate(counts)])
    index = index[torch.randperm(len(index), generator=g)]  # images interleaved
    points = torch.rand(len(index), num_points, 2, generator=g, dtype=torch.float64) * 255
    labels = (torch.rand(len(index), num_points, generator=g) > 0.2).long()
    return points, labels, index


@pytest.mark.parametrize('num_points', [1, 2, 4])
def test_shared_image_logits_equal_per_prompt_logits(tiny_sam, num_points):
    g = torch.Generator().manual_seed(num_points)
    emb = torch.randn(5, 256, 16, 16, generator=g)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    counts = [3, 0, 1, 5, 2]  # image 1 has no prompt
    points, labels, index = _random_prompts(g, counts, num_points)
    with torch.no_grad():
        sparse, dense = tiny_sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        old, old_iou = decode_batched(tiny_sam.mask_decoder, emb, pe, sparse, dense, index)
        new, new_iou = decode_shared_image(tiny_sam.mask_decoder, emb, pe, sparse, dense, index)
        # one image alone takes the AMG's single-image form
        rows = torch.nonzero(index == 3).flatten()
        one, _ = decode_shared_image(tiny_sam.mask_decoder, emb, pe, sparse[rows], dense[rows],
                                     index[rows])
    assert new.shape == old.shape == (11, 4, 64, 64) and new_iou.shape == (11, 4)
    assert (new - old).abs().max() < LOGIT_ATOL
    assert (new_iou - old_iou).abs().max() < LOGIT_ATOL
    assert torch.equal(new > 0, old > 0) and 0.05 < (old > 0).float().mean() < 0.95
    assert (one - old[rows]).abs().max() < LOGIT_ATOL


def test_backend_shared_path_matches_the_per_prompt_path():
    """Through the back-end: point counts 1-3 (decoded in groups), boxes on some prompts;
    mask inputs keep the per-prompt path (bit-identical)."""
    new = SamPromptBackend('tiny', None, device='cpu', seed=0)
    old = SamPromptBackend('tiny', None, device='cpu', seed=0, shared_image_decoder=False)
    g = torch.Generator().manual_seed(3)
    feats = ImageFeatures(embeddings=torch.randn(4, 256, 16, 16, generator=g),
                          input_sizes=torch.tensor([[256, 192]] * 4),
                          original_sizes=torch.tensor([[100, 75]] * 4), img_size=256)
    n = 10
    k = torch.tensor([1, 3, 2, 1, 1, 2, 3, 1, 2, 1])
    labels = torch.where(torch.arange(3)[None] < k[:, None], 1, -1)
    boxes = torch.full((n, 4), float('nan'))
    boxes[[2, 7]] = torch.tensor([[10.0, 20.0, 150.0, 170.0], [5.0, 5.0, 60.0, 90.0]])
    prompts = PromptBatch(points=torch.rand(n, 3, 2, generator=g, dtype=torch.float64) * 180,
                          labels=labels, image_index=torch.tensor([0, 2, 2, 3, 0, 0, 3, 2, 0, 3]),
                          boxes=boxes)
    a = old.decode(old.prepare(feats), prompts)
    b = new.decode(new.prepare(feats), prompts)
    assert (a.logits - b.logits).abs().max() < LOGIT_ATOL
    assert (a.iou - b.iou).abs().max() < LOGIT_ATOL
    for policy in ('index2', 'best_iou'):
        assert torch.equal(select_masks(a, policy)[0] > 0, select_masks(b, policy)[0] > 0)
    masks = torch.randn(n, 1, 64, 64, generator=g)
    with_masks = PromptBatch(points=prompts.points, labels=prompts.labels,
                             image_index=prompts.image_index, boxes=boxes, mask_inputs=masks)
    assert torch.equal(new.decode(new.prepare(feats), with_masks).logits,
                       old.decode(old.prepare(feats), with_masks).logits)


def test_shared_image_decoder_refuses_mask_inputs(tiny_sam):
    emb = torch.randn(2, 256, 16, 16)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        sparse, dense = tiny_sam.prompt_encoder(
            points=(torch.rand(2, 1, 2) * 255, torch.ones(2, 1)), boxes=None,
            masks=torch.randn(2, 1, 64, 64))
        with pytest.raises(ValueError, match='mask inputs'):
            decode_shared_image(tiny_sam.mask_decoder, emb, pe, sparse, dense,
                                torch.tensor([0, 1]))
        logits, iou = decode_shared_image(tiny_sam.mask_decoder, emb, pe, sparse[:0],
                                          dense[:0], torch.zeros(0, dtype=torch.long))
    assert logits.shape == (0, 4, 64, 64) and iou.shape == (0, 4)
