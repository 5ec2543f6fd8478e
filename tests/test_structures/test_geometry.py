"""The geometry record maps every crop pixel back to the original pixel it came from."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from s2c.datasets.transforms import (
    Normalize,
    PackClsInputs,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRescaleLongSide,
    resize_nearest,
)
from s2c.structures import Geometry
from s2c.utils.segments import renumber_segments


def _sample(h=97, w=131):
    """An image whose 'SE map' stores 1 + the linear index of every original pixel."""
    ids = (np.arange(h * w, dtype=np.int64) + 1).reshape(h, w).astype(np.uint16)
    img = np.zeros((h, w, 3), np.uint8)
    img[40:44, 100:104] = 255  # a marked 4x4 point
    return dict(img=img, se_map=ids, ori_shape=(h, w), img_shape=(h, w),
                geometry=Geometry.identity(h, w), name='x', img_path='x.jpg',
                gt_label=np.ones(3, np.float32))


@pytest.mark.parametrize('rescale,flip,crop', list(itertools.product(
    [None, (60, 60), (200, 220)], [False, True], [64, 150])))
def test_every_crop_pixel_maps_to_its_source(rescale, flip, crop):
    np.random.seed(3)
    h, w = 97, 131
    results = _sample(h, w)
    if rescale is not None:
        results = RandomRescaleLongSide(*rescale)(results)
    results = RandomHorizontalFlip(prob=1.0 if flip else 0.0)(results)
    results = RandomCrop(crop)(results)
    geo = results['geometry']
    se = results['se_map'].astype(np.int64)
    assert se.shape == (crop, crop) and geo.shape == (crop, crop)
    assert geo.flipped == flip
    valid = geo.valid_mask()
    # padding <=> SE value 0 <=> outside the original
    np.testing.assert_array_equal(valid, se > 0)
    np.testing.assert_array_equal(valid, results['valid'])
    rows, cols = np.nonzero(valid)
    xy = geo.pixel_centres_to_original(np.stack([rows, cols], 1))
    src = se[rows, cols] - 1
    np.testing.assert_array_equal(np.floor(xy[:, 0]).astype(int), src % w)
    np.testing.assert_array_equal(np.floor(xy[:, 1]).astype(int), src // w)
    # and back: the original centre maps into the same crop pixel
    centres = np.stack([src % w + 0.5, src // w + 0.5], 1)
    back = geo.from_original(centres)
    if rescale is None or rescale[0] >= max(h, w):  # upsampling: one-to-many, check containment
        inside = (np.floor(back[:, 0]) >= 0) & (np.floor(back[:, 1]) >= 0)
        assert inside.all()


def test_marked_point_lands_where_record_says():
    np.random.seed(0)
    results = _sample()
    results = RandomRescaleLongSide(262, 262)(results)   # x2 exactly: 131 -> 262
    results = RandomHorizontalFlip(prob=1.0)(results)
    results = RandomCrop(256)(results)
    geo = results['geometry']
    # the point occupies original pixels x 100..103, y 40..43 -> centre (102, 42)
    x, y = geo.from_original(np.array([[102.0, 42.0]]))[0]
    img = results['img'].astype(float).mean(axis=2)
    ys, xs = np.nonzero(img > 128)
    assert abs(xs.mean() + 0.5 - x) < 1.0 and abs(ys.mean() + 0.5 - y) < 1.0
    assert geo.scale == pytest.approx((194 / 97, 2.0))


def test_affine_composition_by_hand():
    geo = Geometry.identity(100, 200).rescale(50, 100).hflip().crop(-10, 20, 64, 64)
    # crop pixel centre x=0.5 -> flipped-resized x=20.5 -> resized 100-20.5=79.5 -> orig 159
    assert geo.to_original(np.array([[0.5, 0.5]]))[0].tolist() == pytest.approx([159.0, -19.0])
    valid = geo.valid_mask()  # resized height 50: crop rows 10..59 hold the image
    assert not valid[:10].any() and valid[10:60].all() and not valid[60:].any()


def test_sampling_grid_equals_crop_of_flipped_rescaled_map():
    """A map in the original frame, pulled with grid_sample, equals the transformed map."""
    np.random.seed(1)
    h, w = 40, 60
    results = _sample(h, w)
    results = RandomRescaleLongSide(120, 120)(results)  # x2: nearest upsampling is exact
    results = RandomHorizontalFlip(prob=1.0)(results)
    results = RandomCrop(64)(results)
    geo = results['geometry']
    src = torch.from_numpy(_sample(h, w)['se_map'].astype(np.float32))[None, None]
    grid = geo.sampling_grid()
    pulled = F.grid_sample(src, grid, mode='nearest', align_corners=False)[0, 0].numpy()
    expected = results['se_map'].astype(np.float32)
    np.testing.assert_array_equal(pulled, expected)


def test_resize_nearest_centre_convention():
    arr = np.arange(4)[None, :].repeat(2, 0)
    np.testing.assert_array_equal(resize_nearest(arr, 2, 8)[0], [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(resize_nearest(arr, 2, 2)[0], [1, 3])


def test_resize_nearest_pil_convention():
    """2 -> 7 pixels: output column 3 has source coordinate 3.5 * 2 / 7 = 1 exactly; the pixel
    centre rule takes 1, PIL's fixed-point NEAREST (official SE-map resize) takes 0."""
    arr = np.array([[10, 20]])
    assert resize_nearest(arr, 1, 7)[0].tolist() == [10, 10, 10, 20, 20, 20, 20]
    assert resize_nearest(arr, 1, 7, 'pil')[0].tolist() == [10, 10, 10, 10, 20, 20, 20]
    with pytest.raises(ValueError, match='convention'):
        resize_nearest(arr, 1, 7, 'cv2')
    # equal to PIL itself on random label maps and sizes (uint16 SE maps, any trailing dims)
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w, oh, ow = (int(v) for v in rng.integers(5, 300, 4))
        se = rng.integers(0, 60000, (h, w)).astype(np.uint16)
        pil = np.asarray(Image.fromarray(se.astype(np.int32)).resize((ow, oh), Image.NEAREST))
        np.testing.assert_array_equal(resize_nearest(se, oh, ow, 'pil'), pil)
        assert resize_nearest(se[..., None], oh, ow, 'pil').shape == (oh, ow, 1)
    # the training transform moves the SE map with the chosen convention
    np.random.seed(0)
    results = dict(img=np.zeros((2, 6, 3), np.uint8), se_map=np.array([[1, 2, 3, 4, 5, 6]] * 2),
                   geometry=Geometry.identity(2, 6))
    out = RandomRescaleLongSide(21, 21, map_resize='pil')(results)
    pil = Image.fromarray(np.array([[1, 2, 3, 4, 5, 6]] * 2, np.int32)).resize((21, 7),
                                                                               Image.NEAREST)
    np.testing.assert_array_equal(out['se_map'], np.asarray(pil))


def test_renumber_and_pack():
    se = np.array([[0, 7, 7], [300, 300, 9]], np.uint16)
    np.testing.assert_array_equal(renumber_segments(se), [[0, 1, 1], [3, 3, 2]])
    np.testing.assert_array_equal(renumber_segments(np.array([[5, 9]])), [[1, 2]])
    results = _sample(8, 8)
    results = Normalize()(results)
    packed = PackClsInputs()(results)
    assert packed['inputs'].shape == (3, 8, 8) and packed['inputs'].dtype == torch.float32
    assert packed['data_samples']['se_map'].max().item() == 64
