"""Prompt back-ends: the conformance test every registered back-end passes, vanilla SAM
against segment-anything's decoder (points, boxes, mask inputs), selection policies and
build-time validation."""
from __future__ import annotations

import re

import pytest
import torch

from s2c.models.cpm import build_backend
from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends import (
    REQUIREMENTS,
    SAM_OUTPUT_NAMES,
    PromptBackend,
    check_policy,
    select_masks,
)
from s2c.sam.build import build_sam
from s2c.structures import ImageFeatures, MaskPrediction, PromptBatch

PROMPT_BACKENDS.import_from_location()
#: Every back-end s2c registers (test doubles registered by other test files are left out).
REGISTERED = sorted(name for name, cls in PROMPT_BACKENDS.module_dict.items()
                    if cls.__module__.startswith('s2c.'))


def tiny_backend(name: str, **kw) -> PromptBackend:
    """A registered back-end with tiny random weights (or ``checkpoint=``), built through its
    config."""
    return PROMPT_BACKENDS.build(dict(dict(type=name, model_type='tiny', checkpoint=None, seed=0,
                                           device='cpu'), **kw))


def features_for(backend: PromptBackend, b: int = 3, seed: int = 1) -> ImageFeatures:
    """Random features of ``b`` images with what the back-end requires."""
    g = torch.Generator().manual_seed(seed)
    side = backend.img_size // 16
    early = torch.randn(b, side, side, 64, generator=g) if 'early' in backend.requires else None
    refs = torch.rand(b, 4, side, side, generator=g) if 'reference' in backend.requires else None
    return ImageFeatures(embeddings=torch.randn(b, 256, side, side, generator=g),
                         input_sizes=torch.tensor([[256, 192], [192, 256], [256, 256]][:b]),
                         original_sizes=torch.tensor([[100, 75], [60, 80], [50, 50]][:b]),
                         early=early, references=refs, img_size=backend.img_size)


def mixed_prompts(n: int = 6, seed: int = 2) -> PromptBatch:
    """``n`` prompts over 3 images with 1-3 points (padded), a box on some."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[1, -1, -1], [1, 1, -1], [1, 0, 1], [1, -1, -1], [1, 1, -1],
                           [0, 1, -1]])[:n]
    boxes = torch.full((n, 4), float('nan'))
    boxes[1] = torch.tensor([20.0, 30.0, 150.0, 170.0])
    boxes[4] = torch.tensor([5.0, 5.0, 60.0, 90.0])
    return PromptBatch(points=torch.rand(n, 3, 2, generator=g) * 180, labels=labels,
                       image_index=torch.tensor([0, 2, 1, 2, 0, 1])[:n],
                       class_index=torch.tensor([3, 1, 0, 2, 1, 0])[:n], boxes=boxes)


@pytest.mark.parametrize('name', REGISTERED)
def test_backend_conformance(name):
    """Shapes, names, IoU (finite or NaN), multi-image = per-image calls, device, no grad."""
    backend = tiny_backend(name)
    assert backend.requires <= REQUIREMENTS and backend.img_size == 256
    assert backend.encoder_id.startswith('tiny-')
    assert not any(p.requires_grad for p in backend.parameters())
    feats, prompts = features_for(backend), mixed_prompts()
    feats.embeddings.requires_grad_(True)
    pred = backend.decode(backend.prepare(feats), prompts)
    m = len(backend.output_names)
    assert isinstance(pred, MaskPrediction) and pred.names == tuple(backend.output_names)
    assert pred.logits.shape == (len(prompts), m, 64, 64) and pred.iou.shape == (6, m)
    assert torch.isfinite(pred.logits).all()
    assert (torch.isfinite(pred.iou) | torch.isnan(pred.iou)).all()
    assert not pred.logits.requires_grad and not pred.iou.requires_grad
    # one multi-image call equals one call per image with only that image's prompts
    for img in range(len(feats)):
        rows = torch.nonzero(prompts.image_index == img).flatten()
        one = ImageFeatures(embeddings=feats.embeddings[img:img + 1].detach(),
                            input_sizes=feats.input_sizes[img:img + 1],
                            original_sizes=feats.original_sizes[img:img + 1],
                            early=None if feats.early is None else feats.early[img:img + 1],
                            references=None if feats.references is None
                            else feats.references[img:img + 1], img_size=feats.img_size)
        sub = PromptBatch(points=prompts.points[rows], labels=prompts.labels[rows],
                          image_index=torch.zeros(len(rows), dtype=torch.long),
                          class_index=prompts.class_index[rows], boxes=prompts.boxes[rows])
        ref = backend(one, sub)
        torch.testing.assert_close(pred.logits[rows], ref.logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(pred.iou[rows], ref.iou, atol=1e-5, rtol=1e-4,
                                   equal_nan=True)
    # no prompt at all: an empty prediction, not an error
    none = PromptBatch(points=torch.zeros(0, 1, 2), labels=torch.zeros(0, 1, dtype=torch.long),
                       image_index=torch.zeros(0, dtype=torch.long),
                       class_index=torch.zeros(0, dtype=torch.long))
    empty = backend.decode(backend.prepare(feats), none)
    assert empty.logits.shape == (0, m, 64, 64) and empty.names == pred.names
    # the back-end moves with .to() and decodes on its device
    backend.to('cpu')
    assert backend.device == torch.device('cpu')
    if torch.cuda.is_available():
        backend.to('cuda')
        out = backend(feats, prompts)
        assert out.logits.device.type == 'cuda'
        torch.testing.assert_close(out.logits.cpu(), pred.logits, atol=1e-3, rtol=1e-3)
        backend.to('cpu')
    multimask = any(name.startswith('multi_') for name in backend.output_names)
    for policy in (('best_iou', ) if multimask else ()) + tuple(backend.output_names):
        logits, iou = select_masks(pred, check_policy(policy, backend.output_names))
        assert logits.shape == (6, 64, 64) and iou.shape == (6,)
    if not multimask:   # e.g. RobustSAM: one output whose IoU was never trained
        with pytest.raises(ValueError, match='trained IoUs'):
            check_policy('best_iou', backend.output_names)


@pytest.mark.parametrize('name', REGISTERED)
def test_backend_online_encoding(name):
    backend = tiny_backend(name, with_image_encoder=True)
    images = torch.rand(2, 3, 256, 256) * 255
    feats = backend.encode(images)
    assert feats.embeddings.shape == (2, 256, 16, 16) and feats.img_size == 256
    assert feats.input_sizes.tolist() == [[256, 256]] * 2
    assert (feats.early is not None) == ('early' in backend.requires)
    backend.requires = frozenset({'early'})  # online encoding fills what is required
    assert backend.encode(images).early.shape == (2, 16, 16, 64)


@pytest.fixture(scope='module')
def sam_backend():
    return tiny_backend('sam')


def _library_decode(backend, emb, points, boxes=None, masks=None):
    sparse, dense = backend.prompt_encoder(points=points, boxes=boxes, masks=masks)
    pe = backend.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        multi, iou_m = backend.mask_decoder(image_embeddings=emb, image_pe=pe,
                                            sparse_prompt_embeddings=sparse,
                                            dense_prompt_embeddings=dense, multimask_output=True)
        single, iou_s = backend.mask_decoder(image_embeddings=emb, image_pe=pe,
                                             sparse_prompt_embeddings=sparse,
                                             dense_prompt_embeddings=dense,
                                             multimask_output=False)
    return torch.cat([single, multi], 1), torch.cat([iou_s, iou_m], 1)


def test_batched_decode_equals_library_decoder(sam_backend):
    """Points (padded), boxes (some prompts) and mask inputs, several images, one call."""
    backend = sam_backend
    feats, prompts = features_for(backend), mixed_prompts()
    masks = torch.randn(6, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    for mask_inputs in (None, masks):
        batch = PromptBatch(points=prompts.points, labels=prompts.labels,
                            image_index=prompts.image_index, boxes=prompts.boxes,
                            mask_inputs=mask_inputs)
        pred = backend(feats, batch)
        assert pred.names == SAM_OUTPUT_NAMES
        for n in range(6):
            k = int((batch.labels[n] != -1).sum())
            keep = batch.labels[n] != -1
            box = batch.boxes[n:n + 1] if torch.isfinite(batch.boxes[n]).all() else None
            logits, iou = _library_decode(
                backend, feats.embeddings[batch.image_index[n]][None],
                (batch.points[n][keep].view(1, k, 2), batch.labels[n][keep].view(1, k)), box,
                None if mask_inputs is None else mask_inputs[n:n + 1])
            torch.testing.assert_close(pred.logits[n], logits[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(pred.iou[n], iou[0], atol=1e-5, rtol=1e-4)


def test_float64_points_reach_the_prompt_encoder_unrounded(sam_backend):
    """CPM's points are peak x S / H in float64, as the official code passes them to SAM's
    prompt encoder (which divides by the input size, then casts to float32)."""
    backend = sam_backend
    feats = features_for(backend, b=1)
    xy = torch.tensor([[[37 * 256 / 96, 11 * 256 / 96], [81 * 256 / 96, 50 * 256 / 96]]],
                      dtype=torch.float64)
    batch = PromptBatch(points=xy, labels=torch.ones(1, 2, dtype=torch.long),
                        image_index=torch.zeros(1, dtype=torch.long))
    (coords, _), _, _ = batch.group_inputs(torch.tensor([0]))
    assert coords.dtype == torch.float64 and torch.equal(coords, xy)
    logits, _ = _library_decode(backend, feats.embeddings, (xy, torch.ones(1, 2)))
    torch.testing.assert_close(backend(feats, batch).logits, logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('backend,variant,extra_key', [
    ('hq_sam', 'hq_sam', 'mask_decoder.hf_token.weight'),
    ('robust_sam', 'robust_sam', 'mask_decoder.custom_robust_token.weight'),
    ('robust_sam_clear', 'robust_sam', 'mask_decoder.custom_robust_token.weight')])
def test_variant_checkpoints_load_strictly(tmp_path, backend, variant, extra_key):
    """A vanilla SAM file for a variant names the missing keys (the official loaders use
    strict=False and leave them random); a variant's file for vanilla SAM names the extra."""
    vanilla = build_sam('tiny', None, device='cpu', seed=0)
    model = build_sam('tiny', None, device='cpu', seed=0, variant=variant)
    torch.save(vanilla.state_dict(), tmp_path / 'sam.pth')
    # RobustSAM's releases may carry DistributedDataParallel's 'module.' prefix: accepted
    torch.save({'module.' + k: v for k, v in model.state_dict().items()}, tmp_path / 'v.pth')
    with pytest.raises(KeyError, match=rf'(?s)missing.*{re.escape(extra_key)}'):
        tiny_backend(backend, checkpoint=str(tmp_path / 'sam.pth'))
    with pytest.raises(KeyError, match=rf'(?s)unexpected.*{re.escape(extra_key)}'):
        tiny_backend('sam', checkpoint=str(tmp_path / 'v.pth'))
    loaded = tiny_backend(backend, checkpoint=str(tmp_path / 'v.pth'))
    assert torch.equal(loaded.mask_decoder.state_dict()[extra_key[len('mask_decoder.'):]],
                       model.state_dict()[extra_key])


def test_prompt_groups_follow_point_count_and_box():
    prompts = mixed_prompts()
    groups = prompts.groups()
    assert sorted(torch.cat(groups).tolist()) == list(range(6))
    for rows in groups:
        assert len(set(prompts.num_points[rows].tolist())) == 1
        assert len(set(prompts.has_box[rows].tolist())) == 1
    keys = {(int(prompts.num_points[r[0]]), bool(prompts.has_box[r[0]])) for r in groups}
    assert keys == {(1, False), (2, True), (3, False), (2, False)}
    with pytest.raises(ValueError, match='labels'):
        PromptBatch(points=torch.zeros(2, 3, 2), labels=torch.ones(2, 2),
                    image_index=torch.zeros(2))
    with pytest.raises(ValueError, match='extras'):
        PromptBatch(points=torch.zeros(2, 1, 2), labels=torch.ones(2, 1),
                    image_index=torch.zeros(2), extras=dict(ref=torch.zeros(3)))


def test_selection_policies():
    logits = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).view(2, 4, 2, 2)
    iou = torch.tensor([[0.9, 0.1, 0.8, 0.3], [0.1, 0.5, 0.2, 0.4]])
    pred = MaskPrediction(logits=logits, iou=iou, names=SAM_OUTPUT_NAMES)
    sel, s_iou = select_masks(pred, 'index2')
    torch.testing.assert_close(sel, logits[:, 3])
    torch.testing.assert_close(s_iou, iou[:, 3])
    sel, s_iou = select_masks(pred, 'best_iou')  # among multimask outputs only
    assert s_iou.tolist() == pytest.approx([0.8, 0.5])
    torch.testing.assert_close(sel, torch.stack([logits[0, 2], logits[1, 1]]))
    torch.testing.assert_close(select_masks(pred, 'single')[0], logits[:, 0])
    torch.testing.assert_close(select_masks(pred, 'multi_0')[0], logits[:, 1])
    with pytest.raises(ValueError, match='hq'):
        select_masks(pred, 'hq')
    # NaN IoUs never win best_iou
    nan_iou = iou.clone()
    nan_iou[0, 2] = float('nan')
    pick = select_masks(MaskPrediction(logits=logits, iou=nan_iou, names=SAM_OUTPUT_NAMES),
                        'best_iou')[1]
    assert pick.tolist() == pytest.approx([0.3, 0.5])
    with pytest.raises(ValueError, match='index2'):
        check_policy('index2', ('single', 'hq'))
    with pytest.raises(ValueError, match='channel names'):
        MaskPrediction(logits=logits, iou=iou, names=('a', 'b'))


def test_decoder_only_backend_has_no_image_encoder(sam_backend):
    assert sam_backend.image_encoder is None
    with pytest.raises(NotImplementedError, match='online'):
        sam_backend.encode(torch.zeros(1, 3, 256, 256))
    assert not any(p.requires_grad for p in sam_backend.parameters())
    feats = features_for(sam_backend)
    sam_backend.requires = frozenset({'early'})
    try:
        with pytest.raises(ValueError, match="requires 'early'"):
            sam_backend.prepare(feats)
    finally:
        sam_backend.requires = frozenset()


def test_backend_config_is_validated_when_built():
    with pytest.raises(KeyError, match=r"unknown prompt back-end 'sma'.*registered: \[.*'sam'"):
        build_backend(dict(type='sma', model_type='tiny', checkpoint=None))
    with pytest.raises(ValueError, match='checkpiont'):  # no **unused: a typo is an error
        build_backend(dict(type='sam', model_type='tiny', checkpiont='x.pth'))
