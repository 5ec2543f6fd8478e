"""One PNG per image: image | CAM heat map per present class | pseudo-label | ground truth.

Example::

    python tools/analysis_tools/visualize.py --img-dir data/VOCdevkit/VOC2012/JPEGImages \\
        --cams work_dirs/s2c_voc/cams --labels work_dirs/s2c_voc/pl_crf \\
        --gt data/VOCdevkit/VOC2012/SegmentationClass \\
        --split data/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt --max 8 \\
        --out work_dirs/s2c_voc/vis

Panels whose folder is not given (or whose file is missing) are left out; each panel is
captioned (class names for CAMs). Heat maps are the CAM in [0, 1] through the JET colour
map, blended 50/50 with the image; label maps use the VOC palette (255 = light grey) and
are resized with nearest neighbour.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from s2c.cam import load_cams
from s2c.datasets.class_names import VOC_CLASSES
from s2c.datasets.voc12 import read_split
from s2c.utils import VOC_PALETTE, atomic_write, load_label_png


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
                label_dir: str | None, gt_dir: str | None, height: int = 256,
                class_names: tuple[str, ...] = VOC_CLASSES) -> Image.Image:
    """Compose the row of panels of one image (see the module docstring).

    Raises:
        FileNotFoundError: When the image itself is missing.
    """
    path = osp.join(img_dir, name + img_suffix)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path} not found')
    image = np.asarray(Image.open(path).convert('RGB'))
    tiles = [_tile(image, name, height)]
    if cam_dir and osp.isfile(osp.join(cam_dir, name + '.npz')):
        keys, cams = load_cams(osp.join(cam_dir, name + '.npz'))
        for k, cam in zip(keys.tolist(), cams):
            if cam.shape != image.shape[:2]:
                cam = cv2.resize(cam, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            cname = class_names[k] if k < len(class_names) else f'class {k}'
            tiles.append(_tile(heat_overlay(image, cam), f'CAM {cname}', height))
    for folder, caption in ((label_dir, 'pseudo-label'), (gt_dir, 'ground truth')):
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--img-dir', required=True)
    p.add_argument('--img-suffix', default='.jpg')
    p.add_argument('--cams', help='folder of <name>.npz CAMs')
    p.add_argument('--labels', help='folder of pseudo-label PNGs')
    p.add_argument('--gt', help='folder of ground-truth PNGs')
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument('--names', nargs='+')
    names.add_argument('--split', help='image list file')
    p.add_argument('--max', type=int, default=None, help='first N names only')
    p.add_argument('--height', type=int, default=256, help='panel height in pixels')
    p.add_argument('--out', required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        names = args.names if args.names else read_split(args.split)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    names = names[:args.max] if args.max else names
    os.makedirs(args.out, exist_ok=True)
    failed = []
    for name in tqdm(names, desc='visualize', unit='img'):
        try:
            grid = render_grid(name, args.img_dir, args.img_suffix, args.cams, args.labels,
                               args.gt, args.height)
        except (FileNotFoundError, ValueError, OSError) as e:
            failed.append(f'{name}: {e}')
            continue
        with atomic_write(osp.join(args.out, name + '.png')) as tmp:
            grid.save(tmp, format='PNG')
    print(f'{len(names) - len(failed)} grid(s) written to {args.out}')
    if failed:
        print(f'{len(failed)} failed:\n  ' + '\n  '.join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
