"""Visual checks of CAMs and pseudo-labels: one row of panels per image.

Panels: image | CAM heat map per present class | pseudo-label(s) | ground truth.
Heat maps are the CAM in [0, 1] through the JET colour map, blended 50/50 with
the image; label maps use the VOC palette (255 = light grey) and are resized
with nearest neighbour. Used by ``tools/analysis_tools/visualize.py``.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from s2c.cam.cam_io import load_cams
from s2c.datasets.class_names import VOC_CLASSES
from s2c.utils.image_io import read_rgb_image
from s2c.utils.label_io import VOC_PALETTE, load_label_png


def heat_overlay(image: np.ndarray, cam: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """``(H, W, 3)`` uint8 blend of the image and the JET-coloured CAM (values in [0, 1])."""
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return (weight * heat + (1 - weight) * image.astype(np.float32)).astype(np.uint8)


def colorize(label: np.ndarray) -> np.ndarray:
    """``(H, W)`` label map -> ``(H, W, 3)`` uint8 VOC palette colours."""
    return VOC_PALETTE[label.astype(np.int64)]


def _tile(panel: np.ndarray, caption: str, height: int,
          resample: int = Image.BILINEAR) -> Image.Image:
    h, w = panel.shape[:2]
    img = Image.fromarray(panel).resize((max(1, round(w * height / h)), height), resample)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    box = draw.textbbox((0, 0), caption, font=font)
    draw.rectangle((0, 0, box[2] + 6, box[3] + 4), fill=(0, 0, 0))
    draw.text((3, 1), caption, fill=(255, 255, 255), font=font)
    return img


def render_grid(name: str, img_dir: str, img_suffix: str, cam_dir: str | None,
                label_dir: str | Sequence[tuple[str, str]] | None, gt_dir: str | None,
                height: int = 256,
                class_names: tuple[str, ...] = VOC_CLASSES) -> Image.Image:
    """Compose the row of panels of one image (see the module docstring).

    Args:
        name: Image id.
        img_dir: Image folder; ``img_suffix`` its file suffix.
        cam_dir: Folder of ``<name>.npz`` CAMs, or None.
        label_dir: Folder of pseudo-label PNGs (captioned "pseudo-label"), or
            ``(folder, caption)`` pairs, one panel each in that order (e.g. the
            threshold and the ``sam`` pseudo-labels side by side), or None.
        gt_dir: Ground-truth folder, or None.
        height: Panel height in pixels.
        class_names: Foreground class names for the CAM captions.

    Returns:
        PIL.Image.Image: The row; panels whose folder or file is missing are left out.

    Raises:
        FileNotFoundError: When the image itself is missing.
    """
    path = osp.join(img_dir, name + img_suffix)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path} not found')
    image = read_rgb_image(path)
    tiles = [_tile(image, name, height)]
    if cam_dir and osp.isfile(osp.join(cam_dir, name + '.npz')):
        keys, cams = load_cams(osp.join(cam_dir, name + '.npz'))
        for k, cam in zip(keys.tolist(), cams):
            if cam.shape != image.shape[:2]:
                cam = cv2.resize(cam, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            cname = class_names[k] if k < len(class_names) else f'class {k}'
            tiles.append(_tile(heat_overlay(image, cam), f'CAM {cname}', height))
    labels = [(label_dir, 'pseudo-label')] if isinstance(label_dir, str) or label_dir is None \
        else list(label_dir)
    for folder, caption in labels + [(gt_dir, 'ground truth')]:
        if folder and osp.isfile(osp.join(folder, name + '.png')):
            tiles.append(_tile(colorize(load_label_png(osp.join(folder, name + '.png'))),
                               caption, height, Image.NEAREST))
    gap = 4
    grid = Image.new('RGB', (sum(t.width for t in tiles) + gap * (len(tiles) - 1), height),
                     (255, 255, 255))
    x = 0
    for t in tiles:
        grid.paste(t, (x, 0))
        x += t.width + gap
    return grid


def stack_rows(rows: list[Image.Image], gap: int = 4) -> Image.Image:
    """Stack grid rows of possibly different widths into one image, left-aligned.

    Args:
        rows: Row images (e.g. from :func:`render_grid`), each ``H_i x W_i``.
        gap: White pixels between rows.

    Returns:
        PIL.Image.Image: RGB image of size ``(max W_i) x (sum H_i + gap * (n - 1))``.

    Raises:
        ValueError: When ``rows`` is empty.
    """
    if not rows:
        raise ValueError('stack_rows needs at least one row')
    width = max(r.width for r in rows)
    height = sum(r.height for r in rows) + gap * (len(rows) - 1)
    out = Image.new('RGB', (width, height), (255, 255, 255))
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + gap
    return out
