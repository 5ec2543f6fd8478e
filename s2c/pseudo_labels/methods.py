"""Pseudo-label methods registered in ``LABEL_METHODS``: CAMs (+ image / SE map) -> label map.

A method is built from a config (``LABEL_METHODS.build(dict(type='crf',
crf=dict(alpha=10)))``), declares what it needs per image, names the
parameters that define its output (recorded in the output folder's manifest)
and maps one image's :class:`LabelInputs` to ``(label, score)``
(:mod:`s2c.pseudo_labels.rules`). Adding a method is one registered class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from s2c.cam.crf import CRFParams
from s2c.registry import LABEL_METHODS

from .rules import crf_labels, se_merge_labels, threshold_labels


@dataclass
class LabelInputs:
    """What a method gets for one image.

    Attributes:
        name: Image name (file stem).
        keys: ``(K,)`` int64 0-based foreground class indices.
        cams: ``(K, H, W)`` float32 CAMs in [0, 1], original resolution.
        num_classes: ``C``, foreground classes of the dataset.
        image: ``(H, W, 3)`` uint8 RGB, or None when the method does not need it.
        se_map: ``(H, W)`` uint16 SE map (0 = no segment), or None.
    """

    name: str
    keys: np.ndarray
    cams: np.ndarray
    num_classes: int = 20
    image: np.ndarray | None = None
    se_map: np.ndarray | None = None


class LabelMethod:
    """Base class of pseudo-label methods.

    Attributes:
        needs_image: Whether :attr:`LabelInputs.image` must be loaded.
        needs_se_map: Whether :attr:`LabelInputs.se_map` must be loaded.
    """

    needs_image: bool = False
    needs_se_map: bool = False

    @property
    def name(self) -> str:
        """The registry name of the method."""
        return getattr(type(self), 'method_name', type(self).__name__)

    @property
    def params(self) -> dict[str, Any]:
        """JSON-able parameters that define the output (for the folder's manifest)."""
        return {}

    def __call__(self, x: LabelInputs) -> tuple[np.ndarray, np.ndarray]:
        """``(label (H, W) int 0..C, score (H, W) float32)`` of one image."""
        raise NotImplementedError


def _require_bg_threshold(method: str, bg_threshold: float | None) -> float:
    if bg_threshold is None:
        raise ValueError(f'method {method!r} needs a background threshold: pass --bg-threshold '
                         'T or --bg-threshold-from the JSON written by tools/test.py')
    return float(bg_threshold)


@LABEL_METHODS.register_module(name='threshold')
class ThresholdLabels(LabelMethod):
    """Constant background score + argmax (:func:`~s2c.pseudo_labels.rules.threshold_labels`).

    Args:
        bg_threshold: Background score in [0, 1] (e.g. the threshold
            ``tools/test.py`` searched).

    Raises:
        ValueError: Without ``bg_threshold``.
    """

    method_name = 'threshold'

    def __init__(self, bg_threshold: float | None = None) -> None:
        self.bg_threshold = _require_bg_threshold(self.method_name, bg_threshold)

    @property
    def params(self) -> dict[str, Any]:
        return dict(bg_threshold=self.bg_threshold)

    def __call__(self, x: LabelInputs) -> tuple[np.ndarray, np.ndarray]:
        return threshold_labels(x.cams, x.keys, self.bg_threshold)


@LABEL_METHODS.register_module(name='crf')
class CRFLabels(LabelMethod):
    """Dense CRF on ``[(1 - max CAM) ** alpha, CAMs]`` (:func:`.rules.crf_labels`).

    Args:
        crf: :class:`~s2c.cam.crf.CRFParams` or its fields as a dict (default:
            the official values, alpha 10).
    """

    method_name = 'crf'
    needs_image = True

    def __init__(self, crf: CRFParams | dict | None = None) -> None:
        self.crf = crf if isinstance(crf, CRFParams) else CRFParams(**(crf or {}))

    @property
    def params(self) -> dict[str, Any]:
        return dict(crf=asdict(self.crf))

    def __call__(self, x: LabelInputs) -> tuple[np.ndarray, np.ndarray]:
        return crf_labels(x.image, x.cams, x.keys, self.crf)


@LABEL_METHODS.register_module(name='se_merge')
class SEMergeLabels(LabelMethod):
    """CAM label map snapped to SAM segments (:func:`~s2c.pseudo_labels.rules.se_merge_labels`).

    Args:
        bg_threshold: Background score of the CAM label map.
        majority: Purity above which a segment qualifies (0.5).
        coverage: Region fraction at or above which a segment qualifies (0.85).

    Raises:
        ValueError: Without ``bg_threshold``.
    """

    method_name = 'se_merge'
    needs_se_map = True

    def __init__(self, bg_threshold: float | None = None, majority: float = 0.5,
                 coverage: float = 0.85) -> None:
        self.bg_threshold = _require_bg_threshold(self.method_name, bg_threshold)
        self.majority = float(majority)
        self.coverage = float(coverage)

    @property
    def params(self) -> dict[str, Any]:
        return dict(bg_threshold=self.bg_threshold, majority=self.majority,
                    coverage=self.coverage)

    def __call__(self, x: LabelInputs) -> tuple[np.ndarray, np.ndarray]:
        return se_merge_labels(x.cams, x.keys, x.se_map, self.bg_threshold,
                               majority=self.majority, coverage=self.coverage)
