"""A synthetic dataset in the VOC layout for the CPU demo and tests.

Four object classes differ in shape, colour and texture statistics; they
are pasted (1-3 per image, with scale variation and occlusion) onto
textured, low-saturation backgrounds. Everything is deterministic for a
seed. The layout is the VOC one, so the real data code paths are exercised::

    <out>/JPEGImages/<name>.jpg
    <out>/SegmentationClass/<name>.png    palette PNG, 0 bg, 1..4 classes
    <out>/SegmentationObject/<name>.png   palette PNG, 0 bg, 1..n objects (VOC layout: one
                                          id per object, painting order; no borders)
    <out>/ImageSets/Segmentation/{train,val}.txt
    <out>/cls_labels.npy                  PSA format: name -> (4,) float32 multi-hot
"""
from __future__ import annotations

import os
import os.path as osp

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from s2c.utils import atomic_write, save_label_png

#: Foreground classes of the demo dataset (label = index + 1).
DEMO_CLASSES = ('disc', 'box', 'triangle', 'ring')

# Per class: base hue (OpenCV 0-179), saturation range, texture kind.
_STYLE = {
    0: dict(hue=0, sat=(170, 255), texture='smooth'),       # red discs
    1: dict(hue=110, sat=(150, 230), texture='stripes'),    # blue striped boxes
    2: dict(hue=60, sat=(150, 230), texture='dots'),        # green dotted triangles
    3: dict(hue=25, sat=(170, 255), texture='checker'),     # orange checkered rings
}


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-saturation smooth noise texture, ``(h, w, 3)`` uint8 RGB."""
    noise = rng.normal(0, 1, (h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 0.35, (h, w, 3)).astype(np.float32)
    base = rng.uniform(90, 170, size=3).astype(np.float32)
    tint = rng.uniform(-15, 15, size=3).astype(np.float32)
    img = base + tint + 22 * noise + 18 * fine
    gray = img.mean(axis=2, keepdims=True)
    img = gray + 0.35 * (img - gray)  # desaturate
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_mask(cls: int, h: int, w: int, cy: float, cx: float, r: float,
                rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    if cls == 0:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.75, 1.0))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif cls == 1:
        angle = rng.uniform(0, 90)
        box = cv2.boxPoints(((cx, cy), (2 * r, 2 * r * rng.uniform(0.6, 1.0)), angle))
        cv2.fillPoly(mask, [box.astype(np.int32)], 1)
    elif cls == 2:
        a0 = rng.uniform(0, 2 * np.pi)
        pts = [(cx + r * np.cos(a0 + k * 2 * np.pi / 3), cy + r * np.sin(a0 + k * 2 * np.pi / 3))
               for k in range(3)]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)
    else:
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        cv2.circle(mask, (int(cx), int(cy)), int(r * 0.5), 0, -1)
    return mask.astype(bool)


def _texture(cls: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB texture of class ``cls``."""
    style = _STYLE[cls]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(5, 9)
    if style['texture'] == 'stripes':
        angle = rng.uniform(0, np.pi)
        pattern = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    elif style['texture'] == 'dots':
        pattern = (np.sin(xx * 2 * np.pi / period) * np.sin(yy * 2 * np.pi / period)) ** 2 * 2 - 1
    elif style['texture'] == 'checker':
        pattern = np.sign(np.sin(xx * 2 * np.pi / period) * np.sin(yy * 2 * np.pi / period))
    else:
        pattern = np.zeros((h, w), np.float32)
    hue = (style['hue'] + rng.integers(-6, 7)) % 180
    sat = rng.integers(*style['sat'])
    val = 150 + 55 * pattern + rng.normal(0, 8, (h, w))
    hsv = np.stack([np.full((h, w), hue, np.float32), np.full((h, w), sat, np.float32),
                    np.clip(val, 0, 255)], axis=2).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def make_demo_image(rng: np.random.Generator, h: int, w: int,
                    num_classes: int = len(DEMO_CLASSES),
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image, its label map and its instance map.

    Objects are pasted in order; a later object covers an earlier one, in both maps.

    Returns:
        tuple: ``(H, W, 3)`` uint8 RGB image, ``(H, W)`` uint8 labels (0 background,
        1..num_classes) and ``(H, W)`` uint8 instance ids (0 background, 1..n in pasting
        order; an object hidden entirely keeps its id unused).
    """
    img = _background(rng, h, w)
    label = np.zeros((h, w), np.uint8)
    instance = np.zeros((h, w), np.uint8)
    n_obj = int(rng.integers(1, 4))
    classes = rng.integers(0, num_classes, size=n_obj)
    for i, cls in enumerate(classes):
        r = rng.uniform(0.12, 0.3) * min(h, w)
        cy, cx = rng.uniform(r * 0.6, h - r * 0.6), rng.uniform(r * 0.6, w - r * 0.6)
        mask = _shape_mask(int(cls), h, w, cy, cx, r, rng)
        img[mask] = _texture(int(cls), h, w, rng)[mask]
        label[mask] = cls + 1
        instance[mask] = i + 1
    return img, label, instance


def make_demo_dataset(out: str, seed: int = 0, num_train: int = 240, num_val: int = 60,
                      size: tuple[int, int] = (160, 160)) -> dict:
    """Write the demo dataset to ``out`` (VOC layout, see module docstring).

    Image sizes vary around ``size`` (+-25 % per side). Files are written
    atomically; an existing complete dataset is overwritten identically
    (deterministic).

    Args:
        out: Output root.
        seed: Random seed.
        num_train: Images in ``train.txt``.
        num_val: Images in ``val.txt``.
        size: Nominal ``(H, W)``.

    Returns:
        dict: ``num_train``, ``num_val``, ``classes`` and per-class image counts.
    """
    rng = np.random.default_rng(seed)
    for sub in ('JPEGImages', 'SegmentationClass', 'SegmentationObject',
                'ImageSets/Segmentation'):
        os.makedirs(osp.join(out, sub), exist_ok=True)
    labels, splits = {}, {'train': [], 'val': []}
    total = num_train + num_val
    for i in tqdm(range(total), desc='demo images', leave=False):
        split = 'train' if i < num_train else 'val'
        name = f'demo_{i:05d}'
        h = int(size[0] * rng.uniform(0.75, 1.25))
        w = int(size[1] * rng.uniform(0.75, 1.25))
        img, label, instance = make_demo_image(rng, h, w)
        present = np.unique(label)
        present = present[(present > 0) & (present < 255)]
        vec = np.zeros(len(DEMO_CLASSES), np.float32)
        vec[present - 1] = 1.0
        labels[name] = vec
        with atomic_write(osp.join(out, 'JPEGImages', name + '.jpg')) as tmp:
            Image.fromarray(img).save(tmp, format='JPEG', quality=92)
        save_label_png(osp.join(out, 'SegmentationClass', name + '.png'), label)
        save_label_png(osp.join(out, 'SegmentationObject', name + '.png'), instance)
        splits[split].append(name)
    for split, names in splits.items():
        with atomic_write(osp.join(out, 'ImageSets/Segmentation', split + '.txt')) as tmp, \
                open(tmp, 'w') as f:
            f.write('\n'.join(names) + '\n')
    with atomic_write(osp.join(out, 'cls_labels.npy')) as tmp, open(tmp, 'wb') as f:
        np.save(f, labels, allow_pickle=True)
    counts = np.sum(np.stack(list(labels.values())), axis=0).astype(int)
    return dict(num_train=num_train, num_val=num_val, classes=DEMO_CLASSES,
                images_per_class=dict(zip(DEMO_CLASSES, counts.tolist())))
