"""PerSAM-F: its losses by hand, the weight fit (a self-fit to the reference) and the cascade."""
from __future__ import annotations

import math

import pytest
import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends.persam import mask_boxes
from s2c.sam.backends.persam_f import dice_loss, fit_mask_weights, focal_loss, weighted_logits
from s2c.structures import ImageFeatures, PromptBatch


def test_losses_by_hand():
    """Logits 0 (p = 0.5) on 4 valid pixels, targets 1 1 0 0, a 5th pixel not valid.
    Dice: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4. Focal: ln 2 * 0.25 * (0.25 | 0.75), mean 0.0866."""
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 9.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    assert dice_loss(logits, targets, valid).item() == pytest.approx(0.4)
    want = math.log(2) * 0.25 * (0.25 + 0.25 + 0.75 + 0.75) / 4
    assert focal_loss(logits, targets, valid).item() == pytest.approx(want)


def _constructed(n_extra: int = 0):
    """Multimask logits where the third output IS the target (+-4 on a square) and the others
    are constant (+8, -2): with the initial 1/3 weights every pixel is positive."""
    target = torch.zeros(16, 16)
    target[4:10, 3:12] = 1
    logits = torch.stack([torch.full((16, 16), 8.0), torch.full((16, 16), -2.0),
                          target * 8 - 4])[None].repeat(1 + n_extra, 1, 1, 1)
    return logits, target[None].repeat(1 + n_extra, 1, 1), torch.ones(1 + n_extra, 16, 16).bool()


def test_fit_finds_the_output_that_is_the_reference():
    logits, target, valid = _constructed()
    start = weighted_logits(logits, torch.full((1, 3), 1 / 3))
    assert ((start > 0) == target.bool()).float().mean() < 0.5
    weights, history = fit_mask_weights(logits, target, valid, steps=300, lr=0.01)
    assert weights.sum().item() == pytest.approx(1.0)
    assert history[-1] < 0.25 * history[0]
    fitted = weighted_logits(logits, weights)
    assert torch.equal(fitted > 0, target.bool())
    assert weights[0, 2] == weights[0].max()
    # batched over prompts = one fit per prompt (each weight has its own AdamW state)
    pair, _ = fit_mask_weights(*_constructed(1), steps=300, lr=0.01)
    torch.testing.assert_close(pair, weights.repeat(2, 1))


def _features() -> ImageFeatures:
    g = torch.Generator().manual_seed(1)
    refs = torch.zeros(2, 3, 16, 16)
    refs[:, :, 3:10, 4:12] = 0.9
    return ImageFeatures(embeddings=torch.randn(2, 256, 16, 16, generator=g),
                         input_sizes=torch.tensor([[256, 192], [192, 256]]),
                         original_sizes=torch.tensor([[100, 75], [60, 80]]), references=refs,
                         img_size=256)


def test_cascade_starts_from_the_weighted_mask():
    backend = PROMPT_BACKENDS.build(dict(type='persam_f', model_type='tiny', seed=0,
                                         device='cpu', fit_steps=20))
    feats = _features()
    prompts = PromptBatch(points=torch.tensor([[[50.0, 60.0]], [[100.0, 80.0]]]),
                          labels=torch.ones(2, 1, dtype=torch.long),
                          image_index=torch.tensor([0, 1]), class_index=torch.tensor([2, 0]))
    steps, fits = [], []
    decode_all, adapt = backend.decode_all, backend.adapt

    def spy_decode(prepared, p, names):
        out = decode_all(prepared, p, names)
        steps.append((p, out))
        return out

    def spy_adapt(*args):
        fits.append(adapt(*args))
        return fits[-1]

    backend.decode_all, backend.adapt = spy_decode, spy_adapt
    pred = backend(feats, prompts)
    assert pred.names == ('persam_f', ) and pred.logits.shape == (2, 1, 64, 64)
    (p0, o0), (p1, _), (p2, o2) = steps
    assert p0.num_points.tolist() == [2, 2] and p0.boxes is None and p0.mask_inputs is None
    weighted = weighted_logits(o0.logits[:, 1:], fits[0])
    torch.testing.assert_close(p1.mask_inputs[:, 0], weighted)
    boxes = mask_boxes(weighted, feats.input_sizes, feats.original_sizes, 256)
    torch.testing.assert_close(p1.boxes, boxes.float(), equal_nan=True)
    assert fits[0].shape == (2, 3) and torch.allclose(fits[0].sum(1), torch.ones(2))
    assert p2.mask_inputs is not None and torch.isfinite(pred.logits).all()
