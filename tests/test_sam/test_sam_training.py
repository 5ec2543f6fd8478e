"""SAM's promptable objective and the demo's class-agnostic SAM: prompts, losses by hand,
instance masks of the demo data, a short training run that learns, the strict reload, and
that training sees no class label and no val image."""
from __future__ import annotations

import math
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

from s2c.apis.demo_sam import load_instance_set, single_point_miou, train_demo_sam
from s2c.datasets import read_split
from s2c.sam.build import build_sam
from s2c.sam.training import (
    dice_loss,
    focal_loss,
    mask_iou,
    promptable_loss,
    sample_box,
    sample_points,
)
from s2c.utils import load_label_png


def test_prompt_sampling_stays_on_the_object():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:20] = True
    pts = sample_points(mask, 50, rng)
    assert pts.shape == (50, 2) and pts.dtype == np.float32
    assert mask[(pts[:, 1] - 0.5).astype(int), (pts[:, 0] - 0.5).astype(int)].all()
    box = sample_box(mask, rng, jitter=0.0)
    np.testing.assert_array_equal(box, [10, 5, 20, 9])
    jittered = np.stack([sample_box(mask, rng) for _ in range(100)])
    assert (np.abs(jittered - [10, 5, 20, 9]) <= [1.0, 0.4, 1.0, 0.4]).all()
    with pytest.raises(ValueError, match='empty'):
        sample_points(np.zeros((3, 3), bool), 1, rng)


def test_losses_by_hand():
    target = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])          # (1, 1, 1, 4)
    valid = torch.tensor([[[[True, True, True, False]]]])       # last pixel is padding
    logits = torch.zeros(1, 4, 1, 4)                            # p = 0.5 everywhere
    logits[0, 2] = torch.tensor([10.0, 10.0, -10.0, 10.0])      # output 2 is right
    # dice of p=0.5 on 3 valid pixels: 1 - (2*1 + 1) / (1.5 + 2 + 1)
    assert dice_loss(logits, target, valid)[0, 0].item() == pytest.approx(1 - 3 / 4.5, abs=1e-6)
    # focal at p=0.5: alpha_t * 0.25 * log 2 per pixel (alpha 0.25 positives, 0.75 negatives)
    expected = (2 * 0.25 + 0.75) * 0.25 * math.log(2) / 3
    assert focal_loss(logits, target, valid)[0, 0].item() == pytest.approx(expected, rel=1e-5)
    iou = mask_iou(logits, target, valid)
    assert iou[0].tolist() == [0.0, 0.0, 1.0, 0.0]  # logit 0 is not > 0
    out = promptable_loss(logits, torch.full((1, 4), 0.5), target, valid, multimask=True)
    assert out['iou'].item() == 1.0  # the best multimask output (2) is trained
    assert out['loss_iou'].item() == pytest.approx((3 * 0.25 + 0.25) / 4)
    single = promptable_loss(logits, torch.zeros(1, 4), target, valid, multimask=False)
    assert single['iou'].item() == 0.0 and single['loss_mask'] > out['loss_mask']


def test_demo_instance_masks_agree_with_class_masks(demo_root):
    for name in read_split(osp.join(demo_root, 'ImageSets/Segmentation/train.txt'))[:16]:
        cls = load_label_png(osp.join(demo_root, 'SegmentationClass', name + '.png'))
        inst = load_label_png(osp.join(demo_root, 'SegmentationObject', name + '.png'))
        np.testing.assert_array_equal(inst > 0, cls > 0)  # every object pixel has its class
        for k in np.unique(inst[inst > 0]):
            assert len(np.unique(cls[inst == k])) == 1  # one class per object


@pytest.fixture
def train_only_copy(demo_root, tmp_path):
    """The demo data without class masks, image-level labels or val images."""
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    shutil.rmtree(root / 'SegmentationClass')
    os.remove(root / 'cls_labels.npy')
    for name in read_split(str(root / 'ImageSets/Segmentation/val.txt')):
        os.remove(root / 'JPEGImages' / (name + '.jpg'))
    return str(root)


@pytest.mark.slow
def test_demo_sam_learns_from_train_objects_only(train_only_copy, tmp_path):
    data = load_instance_set(train_only_copy, 'train', progress=False)
    train_names = read_split(osp.join(train_only_copy, 'ImageSets/Segmentation/train.txt'))
    assert set(data.names) <= set(train_names) and len(data.names) == 16
    assert all(o.dtype == torch.bool and o.ndim == 3 for o in data.objects)  # no class ids
    out = str(tmp_path / 'sam' / 'demo.pth')
    manifest = train_demo_sam(train_only_copy, out, steps=60, batch_size=4, seed=0,
                              progress=False, data=data)
    losses = manifest['losses_every_10']
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert manifest['uses'] == ['JPEGImages', 'SegmentationObject']
    assert manifest['split'] == 'train' and manifest['images'] == 16
    sam = build_sam('tiny', out, device='cpu')  # strict load of the official key set
    assert sam.s2c_checkpoint == out
    assert 0.0 <= single_point_miou(sam, data) <= 100.0


def test_demo_sam_training_is_deterministic_for_a_seed(train_only_copy, tmp_path):
    # bit-identical for one seed at one intra-op thread (make demo's workers use 1 on 2
    # cores); with several threads some CPU backward reductions are not ordered
    data = load_instance_set(train_only_copy, 'train', progress=False)
    kw = dict(steps=3, batch_size=2, progress=False, data=data)
    states, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for run, seed in (('a', 0), ('b', 0), ('c', 1)):
            train_demo_sam(train_only_copy, str(tmp_path / f'{run}.pth'), seed=seed, **kw)
            states.append(torch.load(tmp_path / f'{run}.pth', map_location='cpu'))
    finally:
        torch.set_num_threads(threads)
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_low_res_targets_by_hand():
    from s2c.apis.demo_sam import to_low_res
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4, :4] = 1          # one whole low-res cell
    target[..., 4:6, 4:6] = 1        # a quarter of another
    valid = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    valid[..., :, 7:] = False        # a quarter of each right-hand cell is padding
    low_t, low_v = to_low_res(target, valid, 2)
    assert low_v[0, 0].tolist() == [[True, True], [True, True]]
    assert torch.allclose(low_t[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.25]]))
    valid[..., :, 6:] = False        # half: not "most" of the cell, so not valid
    low_t, low_v = to_low_res(target, valid, 2)
    assert low_v[0, 0].tolist() == [[True, False], [True, False]]
    assert low_t[0, 0, :, 1].tolist() == [0.0, 0.0]


def test_prompt_batch_takes_several_objects_per_image():
    from s2c.apis.demo_sam import InstanceSet, _prompt_batch
    s = 32
    objects, inputs = [], torch.randn(2, 3, s, s)
    for i in range(2):
        masks = torch.zeros(3, s, s, dtype=torch.bool)
        for o in range(3):
            masks[o, 4 + 8 * o:10 + 8 * o, 2 + 10 * i:8 + 10 * i] = True
        objects.append(masks)
    data = InstanceSet(['a', 'b'], inputs, torch.ones(2, 1, s, s, dtype=torch.bool), objects)
    sam = build_sam('tiny', None, device='cpu', seed=0)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x, valid, target, index, sparse, dense, _ = _prompt_batch(
            sam, data, np.array([0, 1]), rng, 0.5, 3, 2, torch.device('cpu'))
        assert index.tolist() == [0, 0, 1, 1] and target.shape == (4, 1, s, s)
        assert valid.shape == (4, 1, s, s) and len(sparse) == 4
        for n, i in enumerate(index.tolist()):
            flipped = not torch.equal(x[i], inputs[i])
            assert torch.equal(x[i], inputs[i].flip(-1) if flipped else inputs[i])
            objs = objects[i].flip(-1) if flipped else objects[i]  # the mask follows the image
            assert any(torch.equal(target[n, 0].bool(), o) for o in objs)
        assert not torch.equal(target[0], target[1]) and not torch.equal(target[2], target[3])


def test_background_segments_are_the_background_regions(demo_root):
    plain = load_instance_set(demo_root, 'train', progress=False)
    with_bg = load_instance_set(demo_root, 'train', background_segments=True, progress=False)
    assert plain.names == with_bg.names
    for objs, objs_bg, valid in zip(plain.objects, with_bg.objects, with_bg.valid):
        k = len(objs)
        assert torch.equal(objs_bg[:k], objs) and len(objs_bg) > k
        union = objs_bg.any(0)
        # the added segments are the background: disjoint from every object, inside the image
        assert not (objs_bg[k:].any(0) & objs.any(0)).any()
        assert not (objs_bg[k:].any(0) & ~valid[0]).any()
        # objects and background regions tile the image up to tiny regions and resize seams
        assert (union & valid[0]).sum() >= 0.97 * valid[0].sum()


@pytest.mark.slow
def test_make_demo_trains_the_demo_sam_once(demo_root, tmp_path, capsys):
    from s2c.apis.demo import ensure_demo_sam
    out = str(tmp_path / 'demo_sam.pth')
    settings = dict(steps=4, batch_size=2, seed=0)
    quality = ensure_demo_sam(demo_root, out, settings)
    assert 'training the demo SAM' in capsys.readouterr().out
    assert set(quality) == {'demo_sam', 'random_sam'}
    assert all(0.0 <= v <= 100.0 for v in quality.values())
    mtime = os.path.getmtime(out)
    again = ensure_demo_sam(demo_root, out, settings)  # same data and settings: reused
    assert 'using the demo SAM' in capsys.readouterr().out and again == quality
    assert os.path.getmtime(out) == mtime
    ensure_demo_sam(demo_root, out, dict(settings, steps=5))  # other settings: retrained
    assert 'training the demo SAM' in capsys.readouterr().out
