"""SAM refinement of pseudo-labels: CPM at inference (``--method sam``).

For one image, the full-resolution CAMs are turned into point prompts (peaks
per present class), decoded by any registered prompt back-end on the cached
SAM embedding of the image, and composed into a label map with CPM's
confidence rule (:func:`s2c.models.cpm.compose_cpm_labels`): a pixel takes
the class whose selected SAM mask covers it with the highest confidence,
background where no mask covers it. It is the same code as CPM during training
(:meth:`s2c.models.cpm.CPM.refine`) with an identity geometry record: the
"crop" is the whole original image.

Score (for ``--ignore-below``): the CAM value of the assigned class for
foreground pixels, ``1 - max CAM`` for background pixels.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from s2c.models.cpm import CPM
from s2c.registry import LABEL_METHODS
from s2c.structures import Geometry, cpm_to_labels
from s2c.utils.device import resolve_device

from .methods import LabelInputs, LabelMethod


def refine_labels(cpm: CPM, name: str, keys: np.ndarray, cams: np.ndarray, num_classes: int,
                  device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """SAM-refined label map of one image.

    Args:
        cpm: A CPM with the cached embedding source (its back-end and cache).
        name: Image id (looked up in the embedding cache).
        keys: ``(K,)`` 0-based classes present.
        cams: ``(K, H, W)`` CAMs in [0, 1] at original resolution.
        num_classes: ``C``.
        device: Where SAM's decoder runs.

    Returns:
        tuple: ``(H, W)`` uint8 labels (0 background, 1..C) and ``(H, W)`` float32 scores.
    """
    k, h, w = cams.shape
    full = torch.zeros(1, num_classes, h, w, device=device)
    labels = torch.zeros(1, num_classes, device=device)
    if k:
        full[0, torch.as_tensor(keys, device=device)] = torch.from_numpy(cams).to(device)
        labels[0, torch.as_tensor(keys, device=device)] = 1.0
    target = cpm.refine(full, labels, [dict(name=name, geometry=Geometry.identity(h, w))])[0]
    out = cpm_to_labels(target.cpu().numpy(), num_classes)
    fg_max = cams.max(axis=0) if k else np.zeros((h, w), np.float32)
    score = 1.0 - fg_max
    if k:
        lut = np.full(num_classes + 1, -1, np.int64)
        lut[np.asarray(keys) + 1] = np.arange(k)
        idx = lut[out]
        fg = idx >= 0
        score[fg] = np.take_along_axis(cams, np.maximum(idx, 0)[None], 0)[0][fg]
    return out, score.astype(np.float32)


@LABEL_METHODS.register_module(name='sam')
class SamRefineLabels(LabelMethod):
    """CPM at inference on cached embeddings, with any prompt back-end.

    The CPM (back-end, selection policy, embedding cache) is built and checked
    when the method is built, before the first image.

    Args:
        cpm: CPM settings (``backend``, ``embedding_dir``, peak parameters,
            ``selection``, ``confidence``), e.g. ``cfg.model.cpm`` of an S2C config.
        device: Where SAM's decoder runs (``'auto'``: CUDA when available).

    Raises:
        ValueError: Without ``cpm``; see :class:`~s2c.models.cpm.CPM` for the rest.
    """

    method_name = 'sam'

    def __init__(self, cpm: dict | None = None, device: str = 'auto') -> None:
        if not cpm:
            raise ValueError("method 'sam' needs the CPM settings (cpm=dict(backend=..., "
                             'embedding_dir=...)); the tool takes them from an S2C config '
                             '(model.cpm)')
        cfg = {k: v for k, v in dict(cpm).items() if k not in ('type', 'start_epoch',
                                                              'start_iter', 'loss_weight')}
        cfg['embedding_source'] = 'cached'
        self.cpm_cfg = cfg
        self.device = resolve_device(device)
        self.cpm = CPM(**dict(cfg, backend=dict(cfg['backend'], device=str(self.device))))

    @property
    def params(self) -> dict[str, Any]:
        return dict(cpm=self.cpm_cfg)

    def __call__(self, x: LabelInputs) -> tuple[np.ndarray, np.ndarray]:
        return refine_labels(self.cpm, x.name, x.keys, x.cams, x.num_classes, self.device)
