"""CAM mIoU of a CAM folder with the background-threshold search (``tools/test.py``)."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from s2c.cam.cam_io import cam_path, load_cams
from s2c.utils import load_label_png

from .iou import format_iou_table
from .threshold_search import ThresholdSearch


def evaluate_cam_dir(cam_dir: str, gt_dir: str, names: Sequence[str], num_classes: int = 21,
                     thresholds: np.ndarray | None = None,
                     class_names: Sequence[str] | None = None, progress: bool = True) -> dict:
    """CAM mIoU with the background-threshold search over saved CAM files.

    Args:
        cam_dir: Folder of ``<name>.npz`` CAM files (:mod:`s2c.cam.cam_io`).
        gt_dir: Folder of ``<name>.png`` ground truth (0 background, 1..C, 255 ignore).
        names: Images to score.
        num_classes: Classes including background (VOC 21).
        thresholds: Background scores to try (default 0.00, 0.01, ..., 0.50).
        class_names: Foreground class names for the table (default ``'1'..``).
        progress: Show a progress bar.

    Returns:
        dict: ``bg_threshold`` (``None`` when no image could be scored),
        ``miou`` (percent, NaN when none), ``mprecision``, ``mrecall``,
        ``per_class_iou`` (name -> percent), ``miou_per_threshold``, ``table``
        (text), ``scored`` (count), ``no_gt`` (names without a ground-truth
        PNG, e.g. the SBD part of train_aug: not scored, not an error) and
        ``failed`` (name -> reason for images left out by an error).
    """
    search = ThresholdSearch(num_classes, thresholds)
    failed, no_gt, scored = {}, [], 0
    for name in tqdm(names, desc='CAM mIoU', unit='img', disable=not progress):
        gt_path = osp.join(gt_dir, name + '.png')
        if not osp.isfile(gt_path):
            no_gt.append(name)
            continue
        try:
            keys, cams = load_cams(cam_path(cam_dir, name))
            gt = load_label_png(gt_path)
            search.update(cams, keys, gt)
            scored += 1
        except (FileNotFoundError, ValueError) as e:
            failed[name] = str(e)
    best = search.result()
    scores = best['scores']
    names_all = ['background'] + list(class_names or [str(i) for i in range(1, num_classes)])
    return dict(bg_threshold=best['threshold'] if scored else None, scored=scored, no_gt=no_gt,
                miou=100 * scores['miou'] if scored else float('nan'),
                mprecision=100 * scores['mprecision'], mrecall=100 * scores['mrecall'],
                per_class_iou={n: 100 * float(v) for n, v in zip(names_all, scores['iou'])},
                miou_per_threshold={f'{t:.2f}': 100 * float(m) for t, m in
                                    zip(search.thresholds, best['miou_per_threshold'])},
                table=format_iou_table(scores, names_all), failed=failed)

