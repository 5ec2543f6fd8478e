"""Multi-scale + flip CAM inference (official ``model_s2c.py`` ``infer_multi``).

For every scale ``s`` the image is resized with PIL bicubic to
``(round(W s), round(H s))``, normalised, passed through the classifier
with and without a horizontal flip; each raw CAM is upsampled (bilinear) to
the original size, ReLU'd and un-flipped; the views are summed, multiplied by
the image labels and divided by their per-class maximum (+1e-5). S2C uses
scales 0.5/1/1.5/2 with flips: 8 views.
"""
from __future__ import annotations

import json
import os.path as osp
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from s2c.datasets.transforms.loading import read_rgb_image
from s2c.evaluation.iou import format_iou_table
from s2c.evaluation.threshold_search import ThresholdSearch
from s2c.utils import load_label_png

from .cam_io import cam_path, load_cams, save_cams

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _normalise(img: np.ndarray) -> torch.Tensor:
    x = (img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


@torch.no_grad()
def multiscale_cams(model: torch.nn.Module, image: np.ndarray, labels: np.ndarray | torch.Tensor,
                    scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), flip: bool = True,
                    device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised multi-scale CAMs of one image at its original resolution.

    Both flips of a scale run as one batch of 2.

    Args:
        model: A :class:`~s2c.models.CAMClassifier` (``mode='tensor'`` gives ``cam``), in eval mode.
        image: ``(H, W, 3)`` uint8 RGB image.
        labels: ``(C,)`` multi-hot image labels.
        scales: Resize factors.
        flip: Also run the mirrored image.
        device: Where to run (default: the model's device).

    Returns:
        tuple: ``keys`` ``(K,)`` int64 present classes (0-based) and ``cams``
        ``(K, H, W)`` float32 in [0, 1).
    """
    device = device or next(model.parameters()).device
    h, w = image.shape[:2]
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    keys = torch.nonzero(labels > 0.5).flatten()
    if keys.numel() == 0:  # no foreground class: an empty CAM file, no forward pass
        return np.zeros(0, np.int64), np.zeros((0, h, w), np.float32)
    total = None
    pil = Image.fromarray(image)
    for s in scales:
        size = (int(round(w * s)), int(round(h * s)))
        view = _normalise(np.asarray(pil.resize(size, Image.BICUBIC)) if s != 1 else image)
        batch = torch.stack([view, view.flip(-1)]) if flip else view[None]
        cam = model(batch.to(device), mode='tensor')['cam'][:, keys.to(device)]
        cam = F.relu(F.interpolate(cam, size=(h, w), mode='bilinear', align_corners=False))
        summed = cam[0] + cam[1].flip(-1) if flip else cam[0]
        total = summed if total is None else total + summed
    peak = total.flatten(1).max(dim=1).values.view(-1, 1, 1)
    cams = (total / (peak + 1e-5)).float().cpu().numpy()
    return keys.numpy().astype(np.int64), cams


def infer_cam_dir(model: torch.nn.Module, names: Sequence[str], img_dir: str,
                  cls_labels: dict[str, np.ndarray], out_dir: str, *,
                  img_suffix: str = '.jpg', scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
                  flip: bool = True, overwrite: bool = False) -> dict:
    """Write ``<out_dir>/<name>.npz`` CAMs for ``names``; existing files are skipped.

    Returns:
        dict: ``done``, ``skipped``, ``failed`` (name -> reason), ``seconds``. An
        image that cannot be read or whose forward pass fails (e.g. out of GPU
        memory) is recorded in ``failed`` and the others go on.
    """
    model.eval()
    done, skipped, failed = 0, 0, {}
    start = time.time()
    for name in tqdm(names, desc='CAMs (multi-scale)'):
        path = cam_path(out_dir, name)
        if osp.isfile(path) and not overwrite:
            skipped += 1
            continue
        if name not in cls_labels:
            failed[name] = 'no image-level label in cls_labels'
            continue
        try:
            image = read_rgb_image(osp.join(img_dir, name + img_suffix))
        except (FileNotFoundError, ValueError) as e:
            failed[name] = str(e)
            continue
        try:
            keys, cams = multiscale_cams(model, image, cls_labels[name], scales, flip)
        except (RuntimeError, ValueError) as e:  # e.g. CUDA out of memory on a huge image
            failed[name] = f'CAM inference failed: {type(e).__name__}: {e}'
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        save_cams(path, keys, cams)
        done += 1
    return dict(done=done, skipped=skipped, failed=failed, seconds=time.time() - start)


def evaluate_cam_dir(cam_dir: str, gt_dir: str, names: Sequence[str], num_classes: int = 21,
                     thresholds: np.ndarray | None = None,
                     class_names: Sequence[str] | None = None) -> dict:
    """CAM mIoU with the background-threshold search over saved CAM files.

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
    for name in tqdm(names, desc='CAM mIoU'):
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


def save_json(path: str, data: dict) -> None:
    """Write ``data`` as indented JSON atomically (NaN kept as ``NaN``)."""
    from s2c.utils import atomic_write
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        json.dump(data, f, indent=2)


@torch.no_grad()
def batch_multiscale_cams(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                          scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0)) -> torch.Tensor:
    """Normalised multi-scale CAMs of a training batch (CPM step 1, official ``model_s2c.py``).

    The normalised crop batch is resized with ``F.interpolate(bilinear,
    align_corners=True)`` per scale; each raw CAM is upsampled (bilinear) to
    the crop size and ReLU'd; the scales are summed, multiplied by the labels
    and divided by the per-class maximum (+1e-5). No flips (as in the official CPM).

    Args:
        model: The classifier (call it in eval mode).
        inputs: ``(B, 3, H, W)`` normalised crops.
        labels: ``(B, C)`` multi-hot labels.
        scales: Resize factors (S2C: 0.5, 1, 1.5, 2).

    Returns:
        torch.Tensor: ``(B, C, H, W)`` CAMs in [0, 1), zero for absent classes.
    """
    h, w = inputs.shape[-2:]
    total = None
    for s in scales:
        x = inputs if s == 1 else F.interpolate(inputs, scale_factor=s, mode='bilinear',
                                                align_corners=True)
        cam = model(x, mode='tensor')['cam'].float()  # fp32 sum under AMP autocast
        cam = F.relu(F.interpolate(cam, size=(h, w), mode='bilinear', align_corners=False))
        total = cam if total is None else total + cam
    total = total * labels[:, :, None, None]
    peak = total.flatten(2).max(dim=2).values[:, :, None, None]
    return total / (peak + 1e-5)
