"""Our segment-everything generator against segment-anything's SamAutomaticMaskGenerator.

The model is a seeded tiny random SAM built by ``build_sam('tiny')``. Random
weights give masks that barely depend on the prompt and look like pixel noise
(every box is the whole image, so NMS leaves one mask). To get a varied,
hand-checkable set of masks the fixture makes the decoder's output
"blob-like" for BOTH generators (the same model object is given to both):
the transposed-conv kernels of the upscaler are tied (no checkerboard), and
two forward hooks on modules that both generators call (``output_upscaling``
and the hypernetwork MLPs) centre/normalise the upscaled features, add a
constant channel and scale the per-mask weights so that each mask is a few
blobs of varying size. Both paths of our generator are checked: the module's
own decoder forward (bit-identical) and the shared-image decoder
(``fast_decoder=True``, equal up to float re-association).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.utils import amg as sa_amg

from s2c.sam.amg import (
    SamAMG,
    build_all_layer_point_grids,
    generate_crop_boxes,
    masks_to_boxes_xyxy,
)
from s2c.sam.build import build_sam
from s2c.sam.decoders import decode_tokens, predict_iou, predict_mask_logits
from s2c.sam.stability import stability_score


def _blob_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((96, 128, 3), np.uint8)
    for _ in range(8):
        y, x = rng.integers(8, 80, 2)
        h, w = rng.integers(8, 40, 2)
        img[y:y + h, x:x + w] = rng.integers(60, 256, 3)
    return img


def _structured_tiny_sam():
    torch.manual_seed(0)
    sam = build_sam('tiny', device='cpu')
    with torch.no_grad():
        for m in sam.mask_decoder.output_upscaling:
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.copy_(m.weight[:, :, :1, :1].expand_as(m.weight))

    def upscaled_hook(module, inputs, out):
        out = out - out.mean((2, 3), keepdim=True)
        out = out / out.std((1, 2, 3), keepdim=True)
        out[:, 0] = 1.0  # constant channel: its hypernetwork weight is a per-mask bias
        return out

    def hyper_hook(module, inputs, out):
        out = out.clone()
        out[..., 0] = -2.5 * out[..., 1:].norm(dim=-1)
        return 100 * out

    sam.mask_decoder.output_upscaling.register_forward_hook(upscaled_hook)
    for mlp in sam.mask_decoder.output_hypernetworks_mlps:
        mlp.register_forward_hook(hyper_hook)
    return sam


@pytest.fixture(scope='module')
def sam():
    return _structured_tiny_sam()


@pytest.fixture(scope='module')
def image():
    return _blob_image()


@pytest.fixture(scope='module')
def reference(sam, image):
    """The library's records for given parameters, computed once per module."""
    cache = {}

    def run(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            gen = SamAutomaticMaskGenerator(sam, output_mode='binary_mask', **kwargs)
            cache[key] = gen.generate(image)
        return cache[key]

    return run


def _assert_same_records(ours, ref, exact: bool):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a['segmentation'].dtype == bool and a['segmentation'].shape == (96, 128)
        np.testing.assert_array_equal(a['segmentation'], b['segmentation'])
        assert a['area'] == b['area'] == int(b['segmentation'].sum())
        assert a['bbox'] == [int(v) for v in b['bbox']]
        assert a['point_coords'] == b['point_coords']
        assert a['crop_box'] == [int(v) for v in b['crop_box']]
        if exact:
            assert a['predicted_iou'] == b['predicted_iou']
        else:
            assert abs(a['predicted_iou'] - b['predicted_iou']) < 1e-5
        np.testing.assert_allclose(a['stability_score'], b['stability_score'], rtol=1e-6)


# ----------------------------------------------------------------------------- helpers


def test_point_grids_and_crop_boxes_match_library():
    for args in [(32, 0, 1), (8, 2, 2), (5, 1, 1)]:
        ours, ref = build_all_layer_point_grids(*args), sa_amg.build_all_layer_point_grids(*args)
        assert len(ours) == len(ref)
        assert all(np.array_equal(a, b) for a, b in zip(ours, ref))
    assert build_all_layer_point_grids(2, 0, 1)[0].tolist() == [[0.25, 0.25], [0.75, 0.25],
                                                                [0.25, 0.75], [0.75, 0.75]]
    for size, layers in [((96, 128), 1), ((375, 500), 2), ((513, 513), 1)]:
        assert generate_crop_boxes(size, layers, 512 / 1500) == sa_amg.generate_crop_boxes(
            size, layers, 512 / 1500)
    boxes, layer_idx = generate_crop_boxes((100, 200), 1, 0.5)
    # overlap int(0.5 * 100 * 1) = 50; crop_w = ceil((50 + 200) / 2) = 125, crop_h = 75
    assert boxes == [[0, 0, 200, 100], [0, 0, 125, 75], [0, 25, 125, 100], [75, 0, 200, 75],
                     [75, 25, 200, 100]]
    assert layer_idx == [0, 1, 1, 1, 1]


def test_stability_score_and_boxes_by_hand():
    logits = torch.tensor([[[-2.0, -0.5], [0.5, 2.0]], [[-3.0, -3.0], [-3.0, -3.0]]])
    s = stability_score(logits, 0.0, 1.0)
    assert s[0].item() == pytest.approx(1 / 3)  # count(>1) = 1, count(>-1) = 3
    assert torch.isnan(s[1])  # empty at both cut-offs: 0 / 0, as in the library
    masks = torch.zeros(3, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 0] = True
    boxes = masks_to_boxes_xyxy(masks)
    assert boxes.tolist() == [[2, 1, 4, 2], [0, 4, 0, 4], [0, 0, 0, 0]]
    assert torch.equal(boxes, sa_amg.batched_mask_to_box(masks))


def test_shared_image_decoder_equals_mask_decoder():
    torch.manual_seed(1)
    model = build_sam('tiny', device='cpu')
    with torch.no_grad():
        emb = torch.randn(1, 256, 16, 16)
        pts = torch.rand(10, 1, 2, dtype=torch.float64) * 256
        sparse, dense = model.prompt_encoder(points=(pts, torch.ones(10, 1, dtype=torch.int)),
                                             boxes=None, masks=None)
        pe = model.prompt_encoder.get_dense_pe()
        ref_masks, ref_iou = model.mask_decoder(emb, pe, sparse, dense, True)
        hs, keys = decode_tokens(model.mask_decoder, emb, pe, sparse, dense)
        iou = predict_iou(model.mask_decoder, hs)[:, 1:]
        masks = predict_mask_logits(model.mask_decoder, hs[3:7], keys[3:7], (16, 16))[:, 1:]
    assert masks.shape == (4, 3, 64, 64)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=1e-5)
    torch.testing.assert_close(masks, ref_masks[3:7], rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize('fast', [False, True])
@pytest.mark.parametrize('params', [
    dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
    dict(pred_iou_thresh=0.02, stability_score_thresh=0.9),
    dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
])
def test_generator_equals_library(sam, image, reference, params, fast):
    kwargs = dict(points_per_side=6, **params)
    ref = reference(**kwargs)
    ours = SamAMG(sam, fast_decoder=fast, **kwargs).generate(image)
    _assert_same_records(ours, ref, exact=not fast)
    if params.get('box_nms_thresh') == 1.0:
        assert len(ours) == 6 * 6 * 3  # no suppression: every mask of every point
    else:
        assert 5 <= len(ours) < 60
        assert len({tuple(r['bbox']) for r in ours}) > 3  # varied masks, not one blob
    if params['stability_score_thresh'] > 0:
        assert min(r['stability_score'] for r in ours) >= 0.9
        assert min(r['predicted_iou'] for r in ours) > 0.02


@pytest.mark.parametrize('fast', [False, True])
def test_generator_with_crop_layer_equals_library(sam, image, reference, fast):
    kwargs = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  crop_n_layers=1, crop_n_points_downscale_factor=2)
    ref = reference(**kwargs)
    ours = SamAMG(sam, fast_decoder=fast, **kwargs).generate(image)
    _assert_same_records(ours, ref, exact=not fast)
    assert len({tuple(r['crop_box']) for r in ours}) > 1  # masks from the crops survive


def test_small_region_cleanup_equals_library(sam, image, reference):
    kwargs = dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ours = SamAMG(sam, min_mask_region_area=60, **kwargs).generate(image)
    _assert_same_records(ours, reference(min_mask_region_area=60, **kwargs), exact=False)
    plain = reference(**kwargs)
    changed = [r for r in ours if not any(np.array_equal(r['segmentation'], p['segmentation'])
                                          for p in plain)]
    assert changed  # the clean-up did change masks


def test_generate_masks_arrays(sam, image):
    res = SamAMG(sam, points_per_side=6, pred_iou_thresh=0.0,
                 stability_score_thresh=0.0).generate_masks(image)
    n = len(res)
    assert res.masks.shape == (n, 96, 128) and res.masks.dtype == bool
    assert res.boxes.shape == (n, 4) and res.points.shape == (n, 2)
    np.testing.assert_array_equal(res.areas, res.masks.sum(axis=(1, 2)))
    assert np.all(np.diff(res.predicted_iou) <= 0)  # NMS order: descending predicted IoU


def test_generator_with_no_surviving_mask(sam, image):
    res = SamAMG(sam, points_per_side=4, pred_iou_thresh=0.99).generate_masks(image)
    assert len(res) == 0 and res.masks.shape == (0, 96, 128)
    assert SamAMG(sam, points_per_side=4, pred_iou_thresh=0.99).generate(image) == []


def test_bad_arguments(sam):
    with pytest.raises(ValueError, match='exactly one'):
        SamAMG(sam, points_per_side=None)
    with pytest.raises(ValueError, match='exactly one'):
        SamAMG(sam, points_per_side=6, point_grids=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        SamAMG(sam, points_per_side=2).generate(np.zeros((8, 8), np.uint8))
