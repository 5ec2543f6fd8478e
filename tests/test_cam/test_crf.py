"""Dense CRF refinement (s2c.cam.crf) and the crf pseudo-label method."""
from __future__ import annotations

import os
import os.path as osp

import cv2
import numpy as np
import pytest
from PIL import Image

from s2c.cam import CRFParams, background_scores, crf_inference, crf_refine_cams, save_cams
from s2c.pseudo_labels import crf_labels, make_pseudo_labels, threshold_labels
from s2c.utils import load_label_png

pytest.importorskip('pydensecrf.densecrf')


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _two_region_case(h: int = 48, w: int = 64, seed: int = 0):
    """Image with a coloured rectangle on a different background, and a blurred CAM of it."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), bool)
    truth[12:36, 20:48] = True
    img = np.where(truth[..., None], np.array([200, 60, 40]), np.array([50, 110, 190]))
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    cam = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), sigmaX=6)
    cam = np.roll(cam, (3, -4), axis=(0, 1))          # misplaced and blurred
    cam = (cam / cam.max())[None].astype(np.float32)
    return img, cam, truth


def test_background_scores():
    cams = np.array([[[0.2, 1.0]], [[0.5, 0.0]]], np.float32)
    s = background_scores(cams, alpha=2)
    np.testing.assert_allclose(s[0], [[0.25, 0.0]], atol=1e-7)   # (1 - 0.5)^2, (1 - 1)^2
    np.testing.assert_array_equal(s[1:], cams)
    np.testing.assert_array_equal(background_scores(np.zeros((0, 1, 2)), 10), np.ones((1, 1, 2)))


def test_crf_matches_the_official_recipe():
    """Our unary/pairwise set-up equals pydensecrf's unary_from_softmax + official kernels."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    img, cam, _ = _two_region_case()
    scores = background_scores(cam, 10)
    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, 2)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(scores)))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.copy(img), compat=10)
    ref = np.array(d.inference(10)).reshape(2, h, w)
    ours = crf_inference(img, scores)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    np.testing.assert_allclose(ours.sum(0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match='image size'):
        crf_inference(img[:10], scores)


def test_crf_improves_a_blurred_label_map():
    img, cam, truth = _two_region_case()
    keys = np.array([14])
    before, _ = threshold_labels(cam, keys, bg_threshold=0.25)
    probs, after = crf_refine_cams(img, cam, keys, CRFParams(alpha=4))
    assert probs.shape == (2, 48, 64) and set(np.unique(after)) <= {0, 15}
    iou_before = _iou(before == 15, truth)
    iou_after = _iou(after == 15, truth)
    assert iou_before < 0.75                     # blurred + shifted: poor boundary
    assert iou_after > 0.95                      # snapped to the colour edge
    assert iou_after - iou_before > 0.2
    label, score = crf_labels(img, cam, keys, CRFParams(alpha=4))
    np.testing.assert_array_equal(label, after)
    np.testing.assert_allclose(score, probs.max(0), atol=1e-7)


def test_crf_alpha_controls_background():
    img, cam, _ = _two_region_case()
    keys = np.array([0])
    fg = [int((crf_refine_cams(img, cam * 0.6, keys, CRFParams(alpha=a))[1] > 0).sum())
          for a in (1, 4, 24)]
    assert fg[0] < fg[1] < fg[2]                 # larger alpha = weaker background


def test_crf_method_through_the_job(tmp_path):
    img, cam, truth = _two_region_case(seed=1)
    os.makedirs(tmp_path / 'img')
    Image.fromarray(img).save(tmp_path / 'img' / 'x.png')
    save_cams(str(tmp_path / 'cams' / 'x.npz'), [6], cam)
    s = make_pseudo_labels(str(tmp_path / 'cams'), str(tmp_path / 'out'), ['x'], 'crf',
                           img_dir=str(tmp_path / 'img'), img_suffix='.png',
                           crf=CRFParams(alpha=4), progress=False)
    assert s.ok and s.done == ['x']
    out = load_label_png(osp.join(tmp_path, 'out', 'x.png'))
    cam16 = cam.astype(np.float16).astype(np.float32)
    ref, _ = crf_labels(img, cam16, [6], CRFParams(alpha=4))
    np.testing.assert_array_equal(out, ref)
    assert _iou(out == 7, truth) > 0.95
