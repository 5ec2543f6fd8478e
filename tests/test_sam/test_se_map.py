"""SE maps: overlap rules, renumbering, uint16 PNG I/O and the SE providers."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from s2c.registry import SE_PROVIDERS
from s2c.sam.build import build_sam
from s2c.sam.se_map import compose_se_map, paint_order, renumber_se_map
from s2c.utils.se_map_io import load_se_map, save_se_map


def _hand_masks() -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping masks on a 4 x 6 canvas, in generator order (IoU descending).

    m0 (iou .9): rows 0-1, cols 0-3 (8 px); m1 (iou .8): rows 0-3, cols 2-5 (16 px);
    m2 (iou .7): row 1, cols 1-2 (2 px).
    """
    m = np.zeros((3, 4, 6), dtype=bool)
    m[0, 0:2, 0:4] = True
    m[1, 0:4, 2:6] = True
    m[2, 1, 1:3] = True
    return m, np.array([0.9, 0.8, 0.7], dtype=np.float32)


def test_smallest_on_top():
    masks, iou = _hand_masks()
    # Painted m1 (16 px), m0 (8 px), m2 (2 px): visible ids 1 = m1, 2 = m0, 3 = m2.
    expected = np.array([[2, 2, 2, 2, 1, 1],
                         [2, 3, 3, 2, 1, 1],
                         [0, 0, 1, 1, 1, 1],
                         [0, 0, 1, 1, 1, 1]], dtype=np.uint16)
    se = compose_se_map(masks, iou, 'smallest_on_top')
    assert se.dtype == np.uint16
    np.testing.assert_array_equal(se, expected)


def test_highest_iou_on_top_matches_official_reversed_painting():
    masks, iou = _hand_masks()
    # Painted m2, m1, m0 (official: reversed generator order): m2 is fully covered.
    expected = np.array([[2, 2, 2, 2, 1, 1],
                         [2, 2, 2, 2, 1, 1],
                         [0, 0, 1, 1, 1, 1],
                         [0, 0, 1, 1, 1, 1]], dtype=np.uint16)
    np.testing.assert_array_equal(compose_se_map(masks, iou, 'highest_iou_on_top'), expected)
    # The official loop: temp = -1; for i, m in enumerate(reversed(masks)): temp[m] = i
    official = np.full((4, 6), -1)
    for i, m in enumerate(reversed(masks)):
        official[m] = i
    np.testing.assert_array_equal(renumber_se_map(official + 1), expected)
    # Without IoUs the list order is the quality order.
    np.testing.assert_array_equal(compose_se_map(masks, None, 'highest_iou_on_top'), expected)


def test_first_on_top_is_the_official_map_when_the_list_is_not_iou_sorted():
    """After crop layers or small-region clean-up the generator's list is no longer in IoU
    order (here IoUs 0.7, 0.9, 0.8). The official loop paints reversed(masks) with ids i on a
    -1 canvas, and the data loader adds 1: m2 -> 1 (fully covered by m0: a gap), m1 -> 2,
    m0 -> 3. 'first_on_top' is exactly that map; 'highest_iou_on_top' puts m1 on top."""
    masks, _ = _hand_masks()
    iou = np.array([0.7, 0.9, 0.8], dtype=np.float32)
    official = np.array([[3, 3, 3, 3, 2, 2],
                         [3, 3, 3, 3, 2, 2],
                         [0, 0, 2, 2, 2, 2],
                         [0, 0, 2, 2, 2, 2]], dtype=np.uint16)
    np.testing.assert_array_equal(compose_se_map(masks, iou, 'first_on_top'), official)
    np.testing.assert_array_equal(compose_se_map(masks, None, 'first_on_top'), official)
    assert paint_order(np.array([8, 16, 2]), iou, 'first_on_top').tolist() == [2, 1, 0]
    by_iou = np.array([[1, 1, 3, 3, 3, 3],
                       [1, 2, 3, 3, 3, 3],
                       [0, 0, 3, 3, 3, 3],
                       [0, 0, 3, 3, 3, 3]], dtype=np.uint16)
    np.testing.assert_array_equal(compose_se_map(masks, iou, 'highest_iou_on_top'), by_iou)


def test_highest_iou_on_top_sorts_by_iou():
    masks, _ = _hand_masks()
    se = compose_se_map(masks, np.array([0.5, 0.6, 0.9]), 'highest_iou_on_top')
    # Painted m0 (.5), m1 (.6), m2 (.9): m2 on top, m1 covers m0's right half.
    expected = np.array([[1, 1, 2, 2, 2, 2],
                         [1, 3, 3, 2, 2, 2],
                         [0, 0, 2, 2, 2, 2],
                         [0, 0, 2, 2, 2, 2]], dtype=np.uint16)
    np.testing.assert_array_equal(se, expected)


def test_equal_areas_put_the_better_mask_on_top():
    m = np.zeros((2, 1, 3), dtype=bool)
    m[0, 0, 0:2] = True
    m[1, 0, 1:3] = True
    assert paint_order(np.array([2, 2]), np.array([0.9, 0.8]), 'smallest_on_top').tolist() == [1, 0]
    np.testing.assert_array_equal(compose_se_map(m, [0.9, 0.8]), [[2, 2, 1]])
    np.testing.assert_array_equal(compose_se_map(m, [0.7, 0.8]), [[1, 2, 2]])


def test_compose_edge_cases():
    assert compose_se_map(np.zeros((0, 3, 4), bool), image_size=(3, 4)).shape == (3, 4)
    assert compose_se_map([], image_size=(3, 4)).sum() == 0
    with pytest.raises(ValueError, match='image_size'):
        compose_se_map([])
    with pytest.raises(ValueError, match='overlap rule'):
        compose_se_map(np.ones((1, 2, 2), bool), overlap='largest_on_top')
    with pytest.raises(ValueError, match='2 masks but 1'):
        compose_se_map(np.ones((2, 2, 2), bool), [0.5])


def test_renumber_keeps_order_and_refuses_overflow():
    labels = np.array([[0, 7, 7], [300, 0, 65540]])
    np.testing.assert_array_equal(renumber_se_map(labels), [[0, 1, 1], [2, 0, 3]])
    np.testing.assert_array_equal(renumber_se_map(np.array([[5, 9]])), [[1, 2]])
    many = np.arange(1, 65537, dtype=np.int64).reshape(256, 256)  # 65,536 segments
    with pytest.raises(ValueError, match='65536 segments'):
        renumber_se_map(many)
    assert renumber_se_map(many - 1).max() == 65535  # 0 + 65,535 segments fit


def test_png_round_trip_with_large_ids(tmp_path):
    se = np.zeros((5, 7), dtype=np.uint16)
    se[0, 0], se[1, 2], se[4, 6], se[2, :] = 300, 65535, 256, np.arange(7)
    path = str(tmp_path / 'a' / 'se.png')
    save_se_map(path, se)
    assert os.listdir(tmp_path / 'a') == ['se.png']  # no temporary file left
    back = load_se_map(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, se)
    pil = Image.open(path)
    assert pil.mode.startswith('I;16') or pil.mode == 'I'  # a real 16-bit PNG
    save_se_map(path, se.astype(np.int64))  # other integer dtypes in range are fine
    np.testing.assert_array_equal(load_se_map(path), se)


def test_png_errors(tmp_path):
    with pytest.raises(ValueError, match='outside'):
        save_se_map(str(tmp_path / 'x.png'), np.array([[0, 65536]]))
    with pytest.raises(ValueError, match='outside'):
        save_se_map(str(tmp_path / 'x.png'), np.array([[-1, 0]]))
    with pytest.raises(ValueError, match='2-D integer'):
        save_se_map(str(tmp_path / 'x.png'), np.zeros((2, 2), np.float32))
    assert not os.path.exists(tmp_path / 'x.png')
    with pytest.raises(FileNotFoundError, match='missing.png'):
        load_se_map(str(tmp_path / 'missing.png'))
    bad = tmp_path / 'corrupt.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(ValueError, match='corrupt.png'):
        load_se_map(str(bad))
    rgb = tmp_path / 'rgb.png'
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match='rgb.png.*single-channel'):
        load_se_map(str(rgb))


def test_png_is_much_smaller_than_int64_npy(tmp_path):
    rng = np.random.default_rng(0)
    se = np.repeat(np.repeat(rng.integers(0, 40, (20, 20)), 25, 0), 25, 1).astype(np.uint16)
    save_se_map(str(tmp_path / 'se.png'), se)
    np.save(tmp_path / 'se.npy', se.astype(np.int64))
    assert os.path.getsize(tmp_path / 'se.npy') > 20 * os.path.getsize(tmp_path / 'se.png')


# ----------------------------------------------------------------------------- providers


@pytest.fixture(scope='module')
def photo(voc_samples_root):
    path = os.path.join(voc_samples_root, 'JPEGImages', 'sample_0001.jpg')
    return np.array(Image.open(path).convert('RGB'))[:200, :240]


@pytest.mark.parametrize('cfg', [dict(type='felzenszwalb'), dict(type='slic', n_segments=50)])
def test_partition_providers(photo, cfg):
    provider = SE_PROVIDERS.build(cfg)
    se = provider(photo)
    assert provider.name == cfg['type'] and provider.params['provider'] == cfg['type']
    assert se.shape == photo.shape[:2] and se.dtype == np.uint16
    ids = np.unique(se)
    assert ids[0] == 1 and np.array_equal(ids, np.arange(1, len(ids) + 1))  # full, contiguous
    assert 5 < len(ids) < 2000
    np.testing.assert_array_equal(provider(photo), se)  # deterministic


def test_provider_rejects_bad_images():
    provider = SE_PROVIDERS.build(dict(type='slic'))
    with pytest.raises(ValueError, match='uint8'):
        provider(np.zeros((8, 8, 3), np.float64))
    with pytest.raises(ValueError, match='overlap rule'):
        SE_PROVIDERS.build(dict(type='felzenszwalb', overlap='bottom'))


def test_sam_providers_agree(tmp_path):
    from test_sam_amg import _blob_image, _structured_tiny_sam

    sam = _structured_tiny_sam()
    image = _blob_image()
    common = dict(sam=sam, points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    for overlap in ('smallest_on_top', 'highest_iou_on_top', 'first_on_top'):
        ours = SE_PROVIDERS.build(dict(type='sam_amg', overlap=overlap, **common))
        ref = SE_PROVIDERS.build(dict(type='sam_amg_reference', overlap=overlap, **common))
        se, se_ref = ours(image), ref(image)
        assert se.dtype == np.uint16 and se.shape == (96, 128)
        np.testing.assert_array_equal(se, se_ref)
        assert se.max() >= 3 and (se == 0).any()
        assert ours.params['overlap'] == overlap
        assert ours.params['model_type'] == 'tiny' and ours.params['checkpoint'] is None
        assert {k: v for k, v in ours.params.items() if k != 'provider'} == \
               {k: v for k, v in ref.params.items() if k != 'provider'}


def test_sam_provider_from_config_and_checkpoint_hash(tmp_path):
    ckpt = tmp_path / 'tiny.pth'
    torch.save(build_sam('tiny', device='cpu', seed=0).state_dict(), ckpt)
    provider = SE_PROVIDERS.build(dict(
        type='sam_amg', sam=dict(model_type='tiny', checkpoint=str(ckpt), device='cpu'),
        points_per_side=4))
    params = provider.params
    assert params['checkpoint_sha256'] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert params['points_per_side'] == 4 and params['pred_iou_thresh'] == 0.88
    assert params['overlap'] == 'smallest_on_top'
    se = provider(np.zeros((40, 50, 3), np.uint8))
    assert se.shape == (40, 50) and se.dtype == np.uint16
    with pytest.raises(TypeError, match='points_per_sid'):
        SE_PROVIDERS.build(dict(type='sam_amg', sam=provider.model, points_per_sid=4))
