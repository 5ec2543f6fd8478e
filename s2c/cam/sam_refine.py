"""SAM refinement of pseudo-labels: CPM at inference (``--method sam``).

For one image, the full-resolution CAMs are turned into point prompts
(peaks per present class), decoded by any registered prompt back-end on the
cached SAM embedding of the image, and composed into a label map with CPM's
confidence rule (:func:`s2c.models.losses.cpm.compose_cpm_labels`): a pixel
takes the class whose selected SAM mask covers it with the highest
confidence, background where no mask covers it. It is the same code as CPM
during training (:meth:`s2c.models.losses.cpm.CPM.refine`) with an identity
geometry record: the "crop" is the whole original image.

Score (for ``--ignore-below``): the CAM value of the assigned class for
foreground pixels, ``1 - max CAM`` for background pixels.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from .pseudo_label_job import LabelInputs, PseudoLabelOptions, register_label_method

_CPM_CACHE: dict[str, Any] = {}


def build_refiner(cpm_cfg: dict, device: str = 'auto'):
    """A :class:`~s2c.models.losses.cpm.CPM` for inference, built once per process."""
    from s2c.models.losses.cpm import CPM
    from s2c.utils import resolve_device
    key = json.dumps(cpm_cfg, sort_keys=True, default=str) + str(device)
    if key not in _CPM_CACHE:
        cfg = {k: v for k, v in cpm_cfg.items() if k != 'type'}
        cfg['embedding_source'] = 'cached'
        _CPM_CACHE[key] = (CPM(**cfg), resolve_device(device))
    return _CPM_CACHE[key]


def sam_refine_labels(name: str, keys: np.ndarray, cams: np.ndarray, cpm_cfg: dict,
                      num_classes: int = 20, device: str = 'auto'
                      ) -> tuple[np.ndarray, np.ndarray]:
    """SAM-refined label map of one image.

    Args:
        name: Image id (looked up in the embedding cache).
        keys: ``(K,)`` 0-based classes present.
        cams: ``(K, H, W)`` CAMs in [0, 1] at original resolution.
        cpm_cfg: CPM settings (``backend``, ``embedding_dir``, peak parameters,
            ``selection``, ``confidence``), e.g. ``cfg.model.cpm`` of ``configs/s2c_voc.py``.
        num_classes: ``C``.
        device: Where SAM's decoder runs.

    Returns:
        tuple: ``(H, W)`` uint8 labels (0 background, 1..C) and ``(H, W)`` float32 scores.
    """
    from s2c.datasets.transforms import Geometry
    cpm, dev = build_refiner(cpm_cfg, device)
    k, h, w = cams.shape
    full = torch.zeros(1, num_classes, h, w, device=dev)
    labels = torch.zeros(1, num_classes, device=dev)
    if k:
        full[0, torch.as_tensor(keys, device=dev)] = torch.from_numpy(cams).to(dev)
        labels[0, torch.as_tensor(keys, device=dev)] = 1.0
    target = cpm.refine(full, labels, [dict(name=name, geometry=Geometry.identity(h, w))])[0]
    target = target.cpu().numpy()
    out = np.where(target == num_classes, 0, target + 1).astype(np.uint8)
    fg_max = cams.max(axis=0) if k else np.zeros((h, w), np.float32)
    score = 1.0 - fg_max
    if k:
        lut = np.full(num_classes + 1, -1, np.int64)
        lut[np.asarray(keys) + 1] = np.arange(k)
        idx = lut[out]
        fg = idx >= 0
        score[fg] = np.take_along_axis(cams, np.maximum(idx, 0)[None], 0)[0][fg]
    return out, score.astype(np.float32)


@register_label_method('sam', params=('extra.cpm', 'extra.num_classes'), required_extra=('cpm',))
def _method_sam(x: LabelInputs, o: PseudoLabelOptions) -> tuple[np.ndarray, np.ndarray]:
    return sam_refine_labels(x.name, x.keys, x.cams, dict(o.extra['cpm']),
                             num_classes=int(o.extra.get('num_classes', 20)),
                             device=o.extra.get('device', 'auto'))
