"""A tiny synthetic MS-COCO 2014 (real layout and annotation format) for tests and trials.

Written with pycocotools' own mask encoding, so the converter, the dataset and the tools
see what the real files hold: the 80 real categories (ids 1..90 with gaps), instances of
a few of them (non-contiguous ids: person 1, car 3, dog 18, toothbrush 90), polygon and
compressed-RLE segmentations, overlapping instances of different sizes, a crowd region
(uncompressed RLE, ``iscrowd=1``) and images without any annotation::

    <root>/train2014/COCO_train2014_<12-digit id>.jpg   (6 images, one unannotated)
    <root>/val2014/COCO_val2014_<12-digit id>.jpg       (3 images, one unannotated)
    <root>/annotations/instances_{train,val}2014.json

Deterministic for a seed. Objects are painted in their class colour (plus noise) in the
order the converter paints them (largest area first), so the image agrees with the masks.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
from PIL import Image

from s2c.utils.fileio import atomic_save_json, atomic_write

from .class_names import COCO_CLASSES

try:  # optional dependency (extra ``coco``)
    from pycocotools import mask as mask_utils
except ImportError as _err:  # pragma: no cover - install problem
    mask_utils, _COCO_ERROR = None, _err

#: COCO's 80 category ids (1..90 without the 10 unused ids), in COCO_CLASSES order.
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91)
                          if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
_COLOURS = {1: (220, 60, 60), 3: (60, 90, 220), 18: (60, 200, 80), 90: (230, 200, 40)}
H, W = 64, 80

# (split, image id, [(category id, kind, geometry, iscrowd)]); kinds: 'poly' (x,y list),
# 'rle' (ellipse cy, cx, ry, rx -> compressed RLE), 'crowd' (box y0, x0, y1, x1 ->
# uncompressed RLE).
_IMAGES = [
    ('train2014', 9, [(1, 'poly', [8, 6, 60, 6, 60, 58, 8, 58], 0),
                      (18, 'poly', [30, 20, 50, 20, 50, 40, 30, 40], 0)]),
    ('train2014', 25, [(3, 'rle', (32, 40, 20, 30), 0),
                       (1, 'poly', [2, 2, 20, 2, 20, 30, 2, 30], 0)]),
    ('train2014', 30, [(1, 'crowd', (4, 4, 60, 76), 1),
                       (3, 'poly', [20, 20, 40, 20, 40, 36, 20, 36], 0)]),
    ('train2014', 34, []),
    ('train2014', 36, [(90, 'poly', [60, 40, 76, 40, 76, 60, 60, 60], 0),
                       (1, 'poly', [4, 4, 44, 4, 44, 50, 4, 50], 0),
                       (1, 'poly', [30, 10, 56, 10, 56, 30, 30, 30], 0)]),
    ('train2014', 42, [(18, 'rle', (30, 30, 16, 22), 0)]),
    ('val2014', 73, [(1, 'poly', [10, 10, 40, 10, 40, 50, 10, 50], 0),
                     (3, 'rle', (40, 60, 12, 14), 0)]),
    ('val2014', 74, [(18, 'poly', [20, 8, 70, 8, 70, 56, 20, 56], 0)]),
    ('val2014', 77, []),
]


def _segmentation(kind: str, geom, iscrowd: int) -> dict | list:
    if kind == 'poly':
        return [[float(v) for v in geom]]
    m = np.zeros((H, W), np.uint8)
    if kind == 'rle':
        cy, cx, ry, rx = geom
        yy, xx = np.mgrid[:H, :W]
        m[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        return dict(size=list(rle['size']), counts=rle['counts'].decode('ascii'))
    y0, x0, y1, x1 = geom  # crowd: uncompressed RLE, as COCO stores crowd regions
    m[y0:y1, x0:x1] = 1
    flat = m.flatten(order='F')
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return dict(size=[H, W], counts=counts)


def _decode(segmentation) -> np.ndarray:
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, H, W))
    elif isinstance(segmentation['counts'], list):
        rle = mask_utils.frPyObjects(segmentation, H, W)
    else:
        rle = dict(size=segmentation['size'], counts=segmentation['counts'].encode('ascii'))
    return mask_utils.decode(rle).astype(bool)


def make_synthetic_coco14(root: str, seed: int = 0) -> dict[str, int]:
    """Write the synthetic COCO 2014 (module docstring) under ``root``.

    Args:
        root: Output folder (created).
        seed: Seed of the image noise.

    Returns:
        dict: ``split -> number of images``.

    Raises:
        ImportError: When pycocotools is missing.
    """
    if mask_utils is None:  # pragma: no cover - install problem
        raise ImportError('pip install pycocotools (or pip install -e .[coco])') from _COCO_ERROR
    rng = np.random.default_rng(seed)
    categories = [dict(id=cid, name=name, supercategory='object')
                  for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]
    out = {}
    ann_id = 1
    for split in ('train2014', 'val2014'):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for s, img_id, objects in _IMAGES:
            if s != split:
                continue
            file_name = f'COCO_{split}_{img_id:012d}.jpg'
            images.append(dict(id=img_id, file_name=file_name, height=H, width=W))
            anns = []
            for cid, kind, geom, crowd in objects:
                seg = _segmentation(kind, geom, crowd)
                m = _decode(seg)
                ys, xs = np.nonzero(m)
                anns.append(dict(id=ann_id, image_id=img_id, category_id=cid,
                                 segmentation=seg, iscrowd=crowd, area=float(m.sum()),
                                 bbox=[float(xs.min()), float(ys.min()),
                                       float(xs.max() - xs.min() + 1),
                                       float(ys.max() - ys.min() + 1)]))
                ann_id += 1
            img = rng.integers(70, 150, (H, W, 3)).astype(np.float64)
            for a in sorted(anns, key=lambda a: (-a['area'], a['id'])):
                img[_decode(a['segmentation'])] = _COLOURS[a['category_id']]
            img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            with atomic_write(osp.join(root, split, file_name)) as tmp:
                Image.fromarray(img).save(tmp, format='JPEG', quality=95)
            annotations += anns
        atomic_save_json(osp.join(root, 'annotations', f'instances_{split}.json'),
                         dict(info=dict(description='s2c synthetic COCO 2014'), licenses=[],
                              images=images, annotations=annotations, categories=categories))
        out[split] = len(images)
    return out
