"""Multi-scale + flip CAM inference (official ``model_s2c.py`` ``infer_multi``).

For every scale ``s`` the image is resized with PIL bicubic to
``(round(W s), round(H s))``, normalised, passed through the classifier
with and without a horizontal flip; each raw CAM is upsampled (bilinear) to
the original size, ReLU'd and un-flipped; the views are summed, multiplied by
the image labels and divided by their per-class maximum (+1e-5). S2C uses
scales 0.5/1/1.5/2 with flips: 8 views.
"""
from __future__ import annotations

import os.path as osp
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from s2c.utils.image_io import read_rgb_image
from s2c.utils.job_summary import JobSummary
from s2c.utils.normalization import normalize_image

from .cam_io import cam_path, save_cams
from .normalize import normalize_cams

#: Inference scales of S2C (and PSA): 0.5, 1, 1.5, 2 (x flip = 8 views).
S2C_SCALES = (0.5, 1.0, 1.5, 2.0)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 ImageNet-normalised."""
    return torch.from_numpy(np.ascontiguousarray(normalize_image(img).transpose(2, 0, 1)))


@torch.no_grad()
def multiscale_cams(model: torch.nn.Module, image: np.ndarray, labels: np.ndarray | torch.Tensor,
                    scales: Sequence[float] = S2C_SCALES, flip: bool = True,
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
        view = _to_tensor(np.asarray(pil.resize(size, Image.BICUBIC)) if s != 1 else image)
        batch = torch.stack([view, view.flip(-1)]) if flip else view[None]
        cam = model(batch.to(device), mode='tensor')['cam'][:, keys.to(device)]
        cam = F.relu(F.interpolate(cam, size=(h, w), mode='bilinear', align_corners=False))
        summed = cam[0] + cam[1].flip(-1) if flip else cam[0]
        total = summed if total is None else total + summed
    cams = normalize_cams(total).float().cpu().numpy()
    return keys.numpy().astype(np.int64), cams


def infer_cam_dir(model: torch.nn.Module, names: Sequence[str], img_dir: str,
                  cls_labels: Mapping[str, np.ndarray], out_dir: str, *,
                  img_suffix: str = '.jpg', scales: Sequence[float] = S2C_SCALES,
                  flip: bool = True, overwrite: bool = False, progress: bool = True,
                  image_transform: Callable[[str, np.ndarray], np.ndarray] | None = None
                  ) -> JobSummary:
    """Write ``<out_dir>/<name>.npz`` CAMs (:mod:`s2c.cam.cam_io`) for ``names``.

    Existing files are skipped unless ``overwrite`` (claim the folder first with
    :func:`s2c.cam.cam_io.prepare_cam_dir`, so that only the same model's CAMs
    are resumed). An image that cannot be read, has no image-level label, or
    whose forward pass fails (e.g. out of GPU memory) is recorded as failed and
    the others go on.

    Args:
        model: The classifier (eval mode is set here).
        names: Image ids.
        img_dir: Image folder.
        cls_labels: ``name -> (C,)`` multi-hot image labels.
        out_dir: CAM folder.
        img_suffix: Image file suffix.
        scales: Inference scales.
        flip: Add the mirrored views.
        overwrite: Recompute existing files.
        progress: Show a progress bar.
        image_transform: ``(name, image) -> image`` applied after reading (e.g. a
            degradation), or ``None``.

    Returns:
        JobSummary: ``done``, ``skipped``, ``failures`` (reasons ``no_cls_label``,
        ``bad_image``, ``inference``), ``wall_s``.
    """
    model.eval()
    summary = JobSummary('cams', out_dir, total=len(names))
    start = time.perf_counter()
    for name in tqdm(names, desc='CAMs (multi-scale)', unit='img', disable=not progress):
        path = cam_path(out_dir, name)
        if osp.isfile(path) and not overwrite:
            summary.skipped.append(name)
            continue
        if name not in cls_labels:
            summary.fail(name, 'no image-level label in cls_labels', 'no_cls_label')
            continue
        try:
            image = read_rgb_image(osp.join(img_dir, name + img_suffix))
            if image_transform is not None:
                image = image_transform(name, image)
        except (FileNotFoundError, ValueError) as e:
            summary.fail(name, str(e), 'bad_image')
            continue
        try:
            keys, cams = multiscale_cams(model, image, cls_labels[name], scales, flip)
        except (RuntimeError, ValueError) as e:  # e.g. CUDA out of memory on a huge image
            summary.fail(name, f'CAM inference failed: {type(e).__name__}: {e}', 'inference')
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        finite = torch.isfinite(cams).all() if isinstance(cams, torch.Tensor) \
            else np.isfinite(np.asarray(cams)).all()
        if not bool(finite):  # never written: a NaN CAM file would poison every later stage
            summary.fail(name, 'CAMs hold NaN/inf values (diverged training or a bad '
                         'checkpoint?); nothing written', 'non_finite_cam')
            continue
        save_cams(path, keys, cams)
        summary.done.append(name)
    summary.wall_s = time.perf_counter() - start
    return summary


@torch.no_grad()
def batch_multiscale_cams(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                          scales: Sequence[float] = S2C_SCALES) -> torch.Tensor:
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
    return normalize_cams(total * labels[:, :, None, None])
