"""Multi-scale + flip CAM inference (official ``model_s2c.py`` ``infer_multi``).

For every scale ``s`` the image is resized with PIL bicubic to
``(round(W s), round(H s))``, normalised, passed through the classifier
with and without a horizontal flip; each raw CAM is upsampled (bilinear) to
the original size, ReLU'd and un-flipped; the views are summed, multiplied by
the image labels and divided by their per-class maximum (+1e-5). S2C uses
scales 0.5/1/1.5/2 with flips: 8 views.

CPM's per-step multi-scale CAMs (:func:`batch_multiscale_cams`) run in a
precision of their own (:data:`CAM_PRECISIONS`), independent of ``--amp``.
"""
from __future__ import annotations

import contextlib
import os.path as osp
import time
import warnings
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

#: Precisions of CPM's no-grad CAM forwards: ``'fp32'`` (autocast disabled, also under
#: ``--amp``; on CUDA convolutions follow ``torch.backends.cudnn.allow_tf32``, i.e. TF32 by
#: PyTorch's default), ``'auto'`` (follow the active autocast when its dtype is in
#: :data:`SAFE_CAM_AUTOCAST_DTYPES`, else fp32), ``'amp'`` (follow any active autocast: fp16
#: under MMEngine's ``--amp``, fp32 without), ``'bf16'`` / ``'fp16'`` (autocast to that
#: dtype, also without ``--amp``).
CAM_PRECISIONS = ('fp32', 'auto', 'amp', 'bf16', 'fp16')
#: Autocast dtypes whose CAMs passed the rule of the issue (>= 95 % of the peak sets and
#: >= 99 % of the CPM label pixels equal to fp32's), measured with
#: ``tools/analysis_tools/study_cam_precision.py`` on the two demo checkpoints
#: (``work_dirs/{s2c,cam}_demo/epoch_12.pth``, 240 training crops and 406 peak sets each,
#: CPU): fp16 autocast passed (96.6 / 98.5 % of the peak sets and 99.81 / 99.98 % of the
#: label pixels unchanged; max CAM difference 3.0e-3 / 8.7e-3), bf16 did not (78.3 / 83.5 %
#: of the peak sets, 98.56 / 99.34 % of the pixels; max CAM difference 2.2e-2 / 4.4e-2).
SAFE_CAM_AUTOCAST_DTYPES = frozenset({torch.float16})
#: Default of CPM's ``cam_precision``, what the measurement supports: fp16 CAMs under
#: ``--amp``'s fp16 autocast, fp32 CAMs under a bf16 autocast and without autocast.
DEFAULT_CAM_PRECISION = 'auto'
_REDUCED_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def cam_autocast_state(precision: str, device_type: str) -> tuple[bool, torch.dtype]:
    """``(autocast enabled, compute dtype)`` that CAM forwards in ``precision`` run with.

    Args:
        precision: One of :data:`CAM_PRECISIONS`.
        device_type: ``'cpu'`` or ``'cuda'``.

    Returns:
        tuple: ``(False, torch.float32)`` for fp32 forwards, else ``(True, dtype)``.

    Raises:
        ValueError: Unknown ``precision``.
    """
    if precision not in CAM_PRECISIONS:
        raise ValueError(f'cam precision must be one of {CAM_PRECISIONS}, got {precision!r}')
    if precision in ('amp', 'auto') and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        if precision == 'amp' or dtype in SAFE_CAM_AUTOCAST_DTYPES:
            return True, dtype
    if precision in ('fp32', 'amp', 'auto'):
        return False, torch.float32
    return True, _REDUCED_DTYPES[precision]


def cam_autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """Context in which CAM forwards run in ``precision`` (see :data:`CAM_PRECISIONS`)."""
    enabled, dtype = cam_autocast_state(precision, device_type)
    if enabled and torch.is_autocast_enabled(device_type) \
            and torch.get_autocast_dtype(device_type) == dtype:
        return contextlib.nullcontext()  # the active autocast as it is
    return torch.autocast(device_type, dtype=dtype if enabled else None, enabled=enabled)


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
                          scales: Sequence[float] = S2C_SCALES, *,
                          precision: str = DEFAULT_CAM_PRECISION,
                          scale_one_cam: Callable[[], torch.Tensor] | None = None
                          ) -> torch.Tensor:
    """Normalised multi-scale CAMs of a training batch (CPM step 1, official ``model_s2c.py``).

    The normalised crop batch is resized with ``F.interpolate(bilinear,
    align_corners=True)`` per scale; each raw CAM is upsampled (bilinear) to
    the crop size and ReLU'd; the scales are summed, multiplied by the labels
    and divided by the per-class maximum (+1e-5). No flips (as in the official CPM).
    All in the crop frame.

    The forwards run in ``precision`` (:data:`CAM_PRECISIONS`; the sum is fp32
    in every precision). When a reduced-precision raw CAM is not finite (fp16
    overflow), every scale is recomputed in fp32, without ``scale_one_cam``, and a
    ``RuntimeWarning`` says so.

    Args:
        model: The classifier (call it in eval mode); ``model(x, mode='tensor')['cam']``
            is the ``(B, C, ceil(H s / 8), ceil(W s / 8))`` raw CAM.
        inputs: ``(B, 3, H, W)`` normalised crops.
        labels: ``(B, C)`` multi-hot labels.
        scales: Resize factors (S2C: 0.5, 1, 1.5, 2).
        precision: Precision of the forwards (default :data:`DEFAULT_CAM_PRECISION`).
        scale_one_cam: Gives the ``(B, C, ceil(H / 8), ceil(W / 8))`` raw CAM of
            ``inputs`` at scale 1 in place of ``model(inputs)`` (e.g. from a stem shared
            with the training forward); called inside the precision context. The caller
            guarantees that it equals ``model(inputs)`` in that precision.

    Returns:
        torch.Tensor: ``(B, C, H, W)`` float32 CAMs in [0, 1), zero for absent classes.

    Raises:
        ValueError: Unknown ``precision``.
    """
    device_type = inputs.device.type
    reduced, _ = cam_autocast_state(precision, device_type)
    with cam_autocast(precision, device_type):
        total, finite = _sum_scale_cams(model, inputs, scales, scale_one_cam)
    if reduced and not bool(finite):
        warnings.warn(f'non-finite CAMs in CPM\'s {precision!r} CAM forwards (overflow?); '
                      'recomputed in fp32', RuntimeWarning, stacklevel=2)
        with cam_autocast('fp32', device_type):
            total, _ = _sum_scale_cams(model, inputs, scales, None)
    return normalize_cams(total * labels[:, :, None, None])


def _sum_scale_cams(model: torch.nn.Module, inputs: torch.Tensor, scales: Sequence[float],
                    scale_one_cam: Callable[[], torch.Tensor] | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 sum ``(B, C, H, W)`` of the ReLU'd upsampled raw CAMs and whether all were finite."""
    h, w = inputs.shape[-2:]
    total, finite = None, torch.ones((), dtype=torch.bool, device=inputs.device)
    for s in scales:
        if s == 1 and scale_one_cam is not None:
            cam = scale_one_cam()
        else:
            x = inputs if s == 1 else F.interpolate(inputs, scale_factor=s, mode='bilinear',
                                                    align_corners=True)
            cam = model(x, mode='tensor')['cam']
        cam = cam.float()  # fp32 sum under autocast
        finite &= torch.isfinite(cam).all()  # one sync at the end, not one per scale
        cam = F.relu(F.interpolate(cam, size=(h, w), mode='bilinear', align_corners=False))
        total = cam if total is None else total + cam
    return total, finite
