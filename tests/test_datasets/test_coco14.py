"""MS-COCO 2014: the converter on a synthetic annotation file made with pycocotools (masks
pixel for pixel, id map, lists, labels, crowd rule, resume), the label importers, the
classification dataset, per-split folders, the CLI."""
from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from s2c.datasets import COCO_CLASSES, COCO14ClsDataset, dataset_class_names, dataset_paths
from s2c.datasets.coco_synthetic import COCO_CATEGORY_IDS, make_synthetic_coco14
from s2c.datasets.converters.coco14 import (
    COCOLayoutError,
    _valid_polygons,
    convert_coco14,
    labels_from_clip_es,
    labels_from_irn,
)
from s2c.utils import load_label_png

PERSON, CAR, DOG, TOOTHBRUSH = 1, 3, 17, 80  # contiguous labels (COCO ids 1, 3, 18, 90)


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco2014'))
    assert make_synthetic_coco14(root) == {'train2014': 6, 'val2014': 3}
    summary = convert_coco14(root, workers=2, progress=False)
    assert summary.ok and summary.written == 7 and summary.num_classes == 80
    assert summary.splits == {'train2014': 5, 'val2014': 2}
    assert summary.skipped_no_annotation == {'train2014': 1, 'val2014': 1}
    return root


def _mask(root, split, img_id):
    return load_label_png(osp.join(root, 'SegmentationClass', split,
                                   f'COCO_{split}_{img_id:012d}.png'))


def _decode(seg, h=64, w=80):
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w))).astype(bool)
    if isinstance(seg['counts'], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w)).astype(bool)
    return mask_utils.decode(dict(size=seg['size'], counts=seg['counts'].encode())).astype(bool)


def test_masks_pixel_for_pixel(coco_root):
    ann = json.load(open(osp.join(coco_root, 'annotations/instances_train2014.json')))
    label_of = {cid: i + 1 for i, cid in enumerate(COCO_CATEGORY_IDS)}
    for img_id in (9, 25, 30, 36, 42):
        anns = [a for a in ann['annotations'] if a['image_id'] == img_id]
        expected = np.zeros((64, 80), np.uint8)
        for a in sorted(anns, key=lambda a: -a['area']):  # largest first, smallest on top
            expected[_decode(a['segmentation'])] = label_of[a['category_id']]
        np.testing.assert_array_equal(_mask(coco_root, 'train2014', img_id), expected)
    # Hand-checked pixels: image 9, the dog (small polygon) lies on the person.
    m9 = _mask(coco_root, 'train2014', 9)
    assert (m9[0, 0], m9[10, 10], m9[30, 40]) == (0, PERSON, DOG)
    # Image 30: crowd person region painted as its class, the car inside on top.
    m30 = _mask(coco_root, 'train2014', 30)
    assert (m30[10, 10], m30[28, 30], m30[2, 2]) == (PERSON, CAR, 0)
    # Image 36: the toothbrush (COCO id 90 -> label 80) and the smaller person on top.
    m36 = _mask(coco_root, 'train2014', 36)
    assert (m36[50, 68], m36[20, 40], m36[40, 10]) == (TOOTHBRUSH, PERSON, PERSON)
    # Image 25: compressed-RLE car ellipse under the smaller person polygon.
    m25 = _mask(coco_root, 'train2014', 25)
    assert (m25[32, 40], m25[10, 10]) == (CAR, PERSON)
    assert not osp.exists(osp.join(coco_root, 'SegmentationClass/train2014/'
                                             'COCO_train2014_000000000034.png'))


def test_id_map_lists_and_labels(coco_root):
    cats = json.load(open(osp.join(coco_root, 'SegmentationClass/coco14_id_map.json')))
    cats = cats['categories']
    assert len(cats) == 80 and [c['label'] for c in cats] == list(range(1, 81))
    assert {c['id']: c['label'] for c in cats}[90] == 80 and cats[16]['name'] == 'dog'
    assert [c['name'] for c in cats] == list(COCO_CLASSES)
    lists = osp.join(coco_root, 'ImageSets/Segmentation')
    assert open(osp.join(lists, 'train.txt')).read().split() == [
        f'COCO_train2014_{i:012d}' for i in (9, 25, 30, 36, 42)]
    assert open(osp.join(lists, 'val.txt')).read().split() == [
        'COCO_val2014_000000000073', 'COCO_val2014_000000000074']
    labels = np.load(osp.join(coco_root, 'cls_labels.npy'), allow_pickle=True).item()
    assert len(labels) == 7 and all(v.shape == (80,) and v.dtype == np.float32
                                    for v in labels.values())
    assert np.flatnonzero(labels['COCO_train2014_000000000009']).tolist() == [0, 16]
    assert np.flatnonzero(labels['COCO_train2014_000000000030']).tolist() == [0, 2]  # crowd
    assert np.flatnonzero(labels['COCO_train2014_000000000036']).tolist() == [0, 79]


def test_crowd_ignore_resume_and_overwrite(tmp_path):
    root = str(tmp_path)
    make_synthetic_coco14(root)
    s = convert_coco14(root, splits=['train2014'], crowd_ignore=True, workers=1, progress=False)
    assert s.ok and s.written == 5
    m30 = _mask(root, 'train2014', 30)
    assert (m30[10, 10], m30[28, 30], m30[2, 2]) == (255, CAR, 0)
    with pytest.raises(ValueError, match='made with crowd_ignore=True'):
        convert_coco14(root, splits=['train2014'], workers=1, progress=False)
    again = convert_coco14(root, splits=['train2014'], crowd_ignore=True, workers=1,
                           progress=False)
    assert again.written == 0 and again.existing == 5
    assert _mask(root, 'train2014', 30)[10, 10] == 255  # kept: masks are not redone
    redo = convert_coco14(root, splits=['train2014'], overwrite=True, workers=1, progress=False)
    assert redo.written == 5 and _mask(root, 'train2014', 30)[10, 10] == PERSON


def test_degenerate_polygons_are_dropped_not_fatal():
    ann = dict(id=1, segmentation=[[1, 2, 3, 4], [0, 0, 4, 0, 4, 4], [1, 2, 3]])
    assert _valid_polygons(ann)['segmentation'] == [[0, 0, 4, 0, 4, 4]]
    assert _valid_polygons(dict(id=2, segmentation=[[1, 2, 3, 4]])) is None
    rle = dict(id=3, segmentation=dict(size=[2, 2], counts=[4]))
    assert _valid_polygons(rle) is rle


def test_layout_errors(tmp_path):
    with pytest.raises(COCOLayoutError, match='does not exist'):
        convert_coco14(str(tmp_path / 'none'))
    (tmp_path / 'train2014').mkdir()
    with pytest.raises(COCOLayoutError, match=r'instances_train2014\.json not found'):
        convert_coco14(str(tmp_path), splits=['train2014'])


def test_importers(tmp_path, coco_root):
    f = tmp_path / 'train.txt'
    f.write_text('COCO_train2014_000000000009 0 16\nCOCO_train2014_000000000036 79 0\n\n')
    labels = labels_from_clip_es([str(f)])
    assert np.flatnonzero(labels['COCO_train2014_000000000036']).tolist() == [0, 79]
    ours = np.load(osp.join(coco_root, 'cls_labels.npy'), allow_pickle=True).item()
    for name, value in labels.items():
        np.testing.assert_array_equal(value, ours[name])
    f.write_text('COCO_train2014_000000000009 80\n')
    with pytest.raises(ValueError, match=r'train\.txt:1: class indices \[80\]'):
        labels_from_clip_es([str(f)])
    irn = {int(n[-12:]): v for n, v in ours.items()}
    np.save(tmp_path / 'irn.npy', irn, allow_pickle=True)
    names = sorted(ours)
    imported = labels_from_irn(str(tmp_path / 'irn.npy'), names)
    assert all(np.array_equal(imported[n], ours[n]) for n in names)
    with pytest.raises(KeyError, match='COCO_val2014_000000000999'):
        labels_from_irn(str(tmp_path / 'irn.npy'), ['COCO_val2014_000000000999'])


def test_dataset_and_split_dirs(coco_root):
    ds = COCO14ClsDataset(data_root=coco_root)
    assert ds.metainfo['classes'] == COCO_CLASSES and len(ds) == 5
    item = ds.get_data_info(0)
    assert item['img_path'].endswith('train2014/COCO_train2014_000000000009.jpg')
    assert item['gt_label'].shape == (80,) and item['gt_label'][16] == 1
    cfg = dict(type='COCO14ClsDataset', data_root=coco_root, img_dir='train2014',
               split_dirs=dict(val=dict(img_dir='val2014', seg_dir='SegmentationClass/val2014')))
    val = dataset_paths(cfg, split='val')
    assert val.img_dir.endswith('val2014') and val.seg_dir.endswith('SegmentationClass/val2014')
    assert dataset_paths(cfg, split='train').img_dir.endswith('train2014')
    assert dataset_class_names(cfg) == COCO_CLASSES
    assert dataset_class_names(dict(type='VOC12ClsDataset'))[0] == 'aeroplane'
    assert dataset_class_names(dict(type='X', classes=['a', 'b'])) == ('a', 'b')


def test_cli(tmp_path, run_tool):
    make_synthetic_coco14(str(tmp_path))
    code, out, err = run_tool('dataset_converters/coco14', tmp_path, '--workers', 1)
    assert code == 0, err
    assert 'train2014: 5 images listed (1 without annotations left out)' in out
    code, _, err = run_tool('dataset_converters/coco14', tmp_path / 'missing')
    assert code == 2 and 'does not exist' in err
