"""PerSAM: target guidance in the two-way transformer, target maps and location prior on
hand-made embeddings, boxes, the three-step cascade and its empty-mask rule."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from segment_anything.modeling.transformer import Attention, TwoWayTransformer

from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends.persam import location_prior, mask_boxes, target_maps
from s2c.sam.decoders.guided import guided_attention, two_way_guided
from s2c.sam.transforms import postprocess_logits
from s2c.structures import ImageFeatures, MaskPrediction, PromptBatch


def test_guided_attention_resoftmaxes_with_the_prior():
    """One query, two keys: plain weights (0.7, 0.3); + attn_sim (0.2, 0.9) and softmax again:
    softmax(0.9, 1.2) = (0.4256, 0.5744)."""
    attn = Attention(2, 1)
    with torch.no_grad():
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    a = math.sqrt(2) * math.log(0.7 / 0.3)
    q, k = torch.tensor([[[a, 0.0]]]), torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    v = torch.eye(2)[None]
    plain = guided_attention(attn, q, k, v)
    assert plain[0, 0].tolist() == pytest.approx([0.7, 0.3], abs=1e-6)
    torch.testing.assert_close(plain, attn(q, k, v))
    guided = guided_attention(attn, q, k, v, torch.tensor([[[[0.2, 0.9]]]]))
    e = [math.exp(0.9), math.exp(1.2)]
    assert guided[0, 0].tolist() == pytest.approx([e[0] / sum(e), e[1] / sum(e)], abs=1e-6)


@pytest.fixture(scope='module')
def transformer():
    torch.manual_seed(0)
    return TwoWayTransformer(depth=2, embedding_dim=32, num_heads=2, mlp_dim=64).eval()


def test_guided_transformer_without_guidance_is_sams(transformer):
    src, pos, tokens = torch.randn(2, 32, 4, 4), torch.randn(2, 32, 4, 4), torch.randn(2, 5, 32)
    with torch.no_grad():
        want = transformer(src, pos, tokens)
        got = two_way_guided(transformer, src, pos, tokens)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_target_embedding_official_alias_and_clean(transformer):
    """The authors add the target embedding in place while the queries are still the tensor
    passed as query PE: the reference below does exactly that with segment-anything's blocks."""
    src, pos, tokens = torch.randn(2, 32, 4, 4), torch.randn(2, 32, 4, 4), torch.randn(2, 5, 32)
    te = torch.randn(2, 1, 32)
    keep = tokens.clone()
    with torch.no_grad():
        point_embedding = tokens.clone()
        queries, keys = point_embedding, src.flatten(2).permute(0, 2, 1)
        key_pe = pos.flatten(2).permute(0, 2, 1)
        for layer in transformer.layers:
            queries += te
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding,
                                  key_pe=key_pe)
        q = queries + point_embedding
        q += te
        want = transformer.norm_final_attn(
            queries + transformer.final_attn_token_to_image(q=q, k=keys + key_pe, v=keys))
        official = two_way_guided(transformer, src, pos, tokens, target_embedding=te)
        clean = two_way_guided(transformer, src, pos, tokens, target_embedding=te,
                               te_alias='clean')
    torch.testing.assert_close(official[0], want)
    assert (clean[0] - want).abs().max() > 1e-3       # the clean form really differs
    assert torch.equal(tokens, keep)                   # the caller's tokens are untouched
    with pytest.raises(ValueError, match='te_alias'):
        two_way_guided(transformer, src, pos, tokens, te_alias='inplace')


def test_target_maps_on_a_hand_made_embedding():
    """Cells (1,0) (0,1) / (1,1) (-1,0); reference 0.9 0.1 / 0.8 0.2 > 0.5 -> cells 00 and 10.
    Mean (1, 0.5): cosine 0.894, 0.447 / 0.949, -0.894. PerSAM-F's mean/max: (1, 0.75)."""
    emb = torch.tensor([[[1.0, 0.0], [1.0, -1.0]], [[0.0, 1.0], [1.0, 0.0]]])[None]
    refs = torch.tensor([[[0.9, 0.1], [0.8, 0.2]], [[0.1, 0.3], [0.2, 0.1]]])[None]
    target, sim = target_maps(emb, refs, 0.5)
    assert target[0, 0].tolist() == pytest.approx([1.0, 0.5])
    r = 1 / math.sqrt(1.25)
    assert sim[0, 0].flatten().tolist() == pytest.approx(
        [r, 0.5 * r, 1.5 * r / math.sqrt(2), -r], abs=1e-6)
    # no cell above the threshold: the maximum cell (0, 1) is the reference
    assert target[0, 1].tolist() == pytest.approx([0.0, 1.0])
    target_f, _ = target_maps(emb, refs, 0.5, reduce='mean_max')
    assert target_f[0, 0].tolist() == pytest.approx([1.0, 0.75])


def test_location_prior_and_boxes_map_original_pixels_to_the_input_frame():
    """Original 4 x 8, input size 16: input frame 8 x 16 (x2). Max at (x 5, y 1) -> (10, 2);
    min at (x 0, y 3) -> (0, 6)."""
    sim = torch.zeros(4, 8)
    sim[1, 5], sim[3, 0] = 1.0, -1.0
    pos, neg = location_prior([sim], torch.tensor([[4, 8]]), 16)
    assert pos.tolist() == [[10.0, 2.0]] and neg.tolist() == [[0.0, 6.0]]
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, 0, 1:3] = 5.0
    boxes = mask_boxes(logits, torch.tensor([[8, 16]] * 2), torch.tensor([[4, 8]] * 2), 16)
    mask = postprocess_logits(logits[:1, None], (8, 16), (4, 8), 16)[0, 0] > 0
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert boxes[0].tolist() == [2.0 * xs.min(), 2.0 * ys.min(), 2.0 * xs.max(), 2.0 * ys.max()]
    assert torch.isnan(boxes[1]).all()


def _features() -> ImageFeatures:
    g = torch.Generator().manual_seed(1)
    return ImageFeatures(embeddings=torch.randn(2, 256, 16, 16, generator=g),
                         input_sizes=torch.tensor([[256, 192], [192, 256]]),
                         original_sizes=torch.tensor([[100, 75], [60, 80]]),
                         references=torch.rand(2, 3, 16, 16, generator=g), img_size=256)


def _prompts() -> PromptBatch:
    return PromptBatch(points=torch.tensor([[[50.0, 60.0], [0.0, 0.0]], [[100.0, 80.0],
                                            [120.0, 90.0]], [[30.0, 30.0], [0.0, 0.0]]]),
                       labels=torch.tensor([[1, -1], [1, 1], [1, -1]]),
                       image_index=torch.tensor([0, 1, 1]), class_index=torch.tensor([2, 0, 1]))


def test_location_prior_modes():
    feats, prompts = _features(), _prompts()
    for mode, counts in (('add', [3, 4, 3]), ('replace', [2, 2, 2]), ('none', [1, 2, 1])):
        backend = PROMPT_BACKENDS.build(dict(type='persam', model_type='tiny', seed=0,
                                             device='cpu', location_prior=mode))
        seen = []
        original = backend.decode_all

        def spy(prepared, p, names, original=original, seen=seen):
            seen.append(p)
            return original(prepared, p, names)

        backend.decode_all = spy
        pred = backend(feats, prompts)
        assert pred.names == ('persam', ) and pred.logits.shape == (3, 1, 64, 64)
        assert seen[0].num_points.tolist() == counts
        if mode != 'none':   # the prior's positive then negative point close each prompt
            assert seen[0].labels[1, counts[1] - 2:counts[1]].tolist() == [1, 0]
    with pytest.raises(ValueError, match='location_prior'):
        PROMPT_BACKENDS.build(dict(type='persam', model_type='tiny', location_prior='best'))


def test_cascade_steps_and_the_empty_mask_rule():
    backend = PROMPT_BACKENDS.build(dict(type='persam', model_type='tiny', seed=0, device='cpu'))
    feats, prompts = _features(), _prompts()
    steps = []
    original = backend.decode_all

    def spy(prepared, p, names):
        out = original(prepared, p, names)
        if len(steps) == 2 and empty_last:   # step 2 finds nothing for prompt 1
            out.logits[1] = -10.0
        steps.append((p, out))
        return out

    backend.decode_all = spy
    for empty_last in (False, True):
        steps.clear()
        pred = backend(feats, prompts)
        (p0, o0), (p1, o1), (p2, o2) = steps
        assert 'attn_sim' in p0.extras and p0.mask_inputs is None and not p1.extras
        torch.testing.assert_close(p1.mask_inputs[:, 0], o0.logits[:, 0])      # step 0: single
        best1 = o1.iou[:, 1:].argmax(dim=1) + 1
        logits1 = o1.logits[torch.arange(3), best1]
        torch.testing.assert_close(p2.mask_inputs[:, 0], logits1)
        boxes = mask_boxes(logits1, feats.input_sizes[prompts.image_index],
                           feats.original_sizes[prompts.image_index], 256)
        torch.testing.assert_close(p2.boxes, boxes.float(), equal_nan=True)
        best2 = o2.iou[:, 1:].argmax(dim=1) + 1
        final = o2.logits[torch.arange(3), best2]
        if empty_last:
            final[1] = logits1[1]
        torch.testing.assert_close(pred.logits[:, 0], final)
    assert isinstance(pred, MaskPrediction)
    with pytest.raises(ValueError, match='class_index'):
        backend(feats, replace(prompts, class_index=None))
