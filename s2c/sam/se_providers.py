"""Segment-everything providers registered in ``SE_PROVIDERS``.

Every provider turns an ``(H, W, 3)`` uint8 RGB image into an SE map
(``(H, W)`` uint16, 0 = no segment, 1..K) and describes itself for cache
manifests:

- ``provider(image) -> np.ndarray``
- ``provider.name``: the registry name;
- ``provider.params``: JSON-serialisable dict of everything that changes
  the output (for SAM providers including the model type and the
  checkpoint's SHA-256).

Providers:

- ``sam_amg``: our generator (:class:`s2c.sam.amg.SamAMG`);
- ``sam_amg_reference``: segment-anything's ``SamAutomaticMaskGenerator``
  (verification / fallback);
- ``felzenszwalb``, ``slic``: scikit-image over-segmentations (full partitions,
  cheap baselines for ablations and the CPU demo).

Build from a config with ``SE_PROVIDERS.build(dict(type='sam_amg', sam=...,
overlap='smallest_on_top', points_per_side=32, ...))``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import segment_anything.automatic_mask_generator as library_amg
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import Sam
from skimage.segmentation import felzenszwalb, slic
from torchvision.ops import batched_nms

from s2c.registry import PROMPT_BACKENDS, SE_PROVIDERS
from s2c.utils.hashing import checkpoint_sha256

from .amg import SamAMG
from .backends import check_policy
from .build import build_sam, encoder_id, sam_autocast
from .se_map import check_overlap_rule, compose_se_map, renumber_se_map
from .transforms import check_rgb_image

#: ``SamAutomaticMaskGenerator`` parameters and their defaults (segment-anything 1.0).
AMG_DEFAULTS: dict[str, Any] = dict(
    points_per_side=32, points_per_batch=64, pred_iou_thresh=0.88, stability_score_thresh=0.95,
    stability_score_offset=1.0, box_nms_thresh=0.7, crop_n_layers=0, crop_nms_thresh=0.7,
    crop_overlap_ratio=512 / 1500, crop_n_points_downscale_factor=1, min_mask_region_area=0)


class SEProvider:
    """Base class: ``__call__(image) -> SE map``, ``name``, ``params``."""

    name = 'base'

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Compute the SE map of an ``(H, W, 3)`` uint8 RGB image.

        Returns:
            np.ndarray: ``(H, W)`` uint16, 0 = no segment, 1..K.

        Raises:
            ValueError: When ``image`` is not ``(H, W, 3)`` uint8.
        """
        check_rgb_image(image)
        return self._compute(image)

    def _compute(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def params(self) -> dict[str, Any]:
        raise NotImplementedError


class _SamProviderBase(SEProvider):
    """Shared by the SAM providers: the model (built or from a config) and the overlap rule."""

    def __init__(self, sam: Sam | dict[str, Any], overlap: str = 'smallest_on_top',
                 autocast_dtype: str | None = None, **amg_kwargs: Any) -> None:
        unknown = sorted(set(amg_kwargs) - set(AMG_DEFAULTS))
        if unknown:
            raise TypeError(f'{self.name}: unknown parameters {unknown}; '
                            f'known: {sorted(AMG_DEFAULTS)}')
        self.overlap = check_overlap_rule(overlap)
        if isinstance(sam, dict):
            cfg = dict(sam)
            autocast_dtype = cfg.pop('autocast_dtype', autocast_dtype)
            self.model = build_sam(cfg.pop('model_type'), cfg.pop('checkpoint', None),
                                   device=cfg.pop('device', 'auto'),
                                   strict=cfg.pop('strict', True),
                                   variant=cfg.pop('variant', 'sam'))
            if cfg:
                raise TypeError(f'{self.name}: unknown sam config keys {sorted(cfg)}')
        elif isinstance(sam, Sam):
            self.model = sam
        else:
            raise TypeError(f'{self.name}: sam must be a built Sam or a config dict, '
                            f'got {type(sam).__name__}')
        self.autocast_dtype = autocast_dtype
        sam_autocast(self.model.pixel_mean.device, autocast_dtype)  # validate early
        self.amg_params = {**AMG_DEFAULTS, **amg_kwargs}
        self._sha: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Provider name, AMG parameters, overlap rule, model type, checkpoint and its
        SHA-256 (None for random weights), autocast dtype."""
        ckpt = getattr(self.model, 's2c_checkpoint', None)
        if ckpt is not None and self._sha is None:
            self._sha = checkpoint_sha256(ckpt)
        return dict(provider=self.name, **self.amg_params, overlap=self.overlap,
                    model_type=getattr(self.model, 's2c_model_type', None), checkpoint=ckpt,
                    checkpoint_sha256=self._sha, autocast_dtype=self.autocast_dtype)

    def _compute(self, image: np.ndarray) -> np.ndarray:
        device = self.model.pixel_mean.device
        with torch.no_grad(), sam_autocast(device, self.autocast_dtype):
            masks, ious = self._masks(image)
        return compose_se_map(masks, ious, self.overlap, image_size=image.shape[:2])

    def _masks(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@SE_PROVIDERS.register_module(name='sam_amg')
class SamAMGProvider(_SamProviderBase):
    """Our segment-everything generator composed into an SE map.

    Args:
        sam: A built SAM, or the ``sam`` config dict (``model_type``,
            ``checkpoint``, ``device``, optional ``autocast_dtype``, ``strict``,
            ``variant``).
        overlap: One of :data:`~s2c.sam.se_map.OVERLAP_RULES`: ``'smallest_on_top'``
            (paper), ``'highest_iou_on_top'`` or ``'first_on_top'`` (official
            code); see :mod:`s2c.sam.se_map`.
        autocast_dtype: None or ``'bf16'`` (CUDA only).
        fast_decoder: See :class:`s2c.sam.amg.SamAMG` (not part of ``params``:
            it does not change the output beyond float rounding).
        backend: Optional ``PROMPT_BACKENDS`` config whose decoder makes the masks
            (e.g. ``dict(type='hq_sam', model_type='vit_h', checkpoint=...)``:
            HQ-SAM's segment-everything); it must hold ``sam``'s image encoder,
            which still encodes the image.
        selection: The back-end's policy, one mask per point (HQ-SAM's AMG:
            ``'hq_official'``, the default with a back-end).
        **amg_kwargs: ``SamAutomaticMaskGenerator`` parameters
            (:data:`AMG_DEFAULTS`).

    Raises:
        ValueError: A back-end whose image encoder is not ``sam``'s.
    """

    name = 'sam_amg'

    def __init__(self, sam: Sam | dict[str, Any], overlap: str = 'smallest_on_top',
                 autocast_dtype: str | None = None, fast_decoder: bool = True,
                 backend: dict[str, Any] | None = None, selection: str | None = None,
                 **amg_kwargs: Any) -> None:
        super().__init__(sam, overlap, autocast_dtype, **amg_kwargs)
        self.backend_cfg, prompt_backend = None, None
        if backend is not None:
            self.backend_cfg = dict(backend)
            selection = selection or 'hq_official'
            prompt_backend = PROMPT_BACKENDS.build(dict(
                self.backend_cfg, device=str(self.model.pixel_mean.device)))
            check_policy(selection, prompt_backend.output_names)
            own = encoder_id(getattr(self.model, 's2c_model_type', None) or
                             self.backend_cfg.get('model_type', 'vit_h'),
                             getattr(self.model, 's2c_checkpoint', None), model=self.model)
            if prompt_backend.encoder_id != own:
                raise ValueError(f'SE-map back-end {self.backend_cfg.get("type")!r} holds image '
                                 f'encoder {prompt_backend.encoder_id}, the `sam` block encodes '
                                 f'with {own}: use the same checkpoint family for both')
        self.selection = selection
        self.generator = SamAMG(self.model, fast_decoder=fast_decoder, backend=prompt_backend,
                                selection=selection, **self.amg_params)

    @property
    def params(self) -> dict[str, Any]:
        """The SAM provider's parameters, plus the back-end and its policy when one is used."""
        params = super().params
        if self.backend_cfg is not None:
            ckpt = self.backend_cfg.get('checkpoint')
            params.update(backend=dict(
                type=self.backend_cfg.get('type'), model_type=self.backend_cfg.get('model_type'),
                checkpoint_sha256=checkpoint_sha256(ckpt) if ckpt else None,
                seed=None if ckpt else self.backend_cfg.get('seed', 0)),
                selection=self.selection)
        return params

    def _masks(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = self.generator.generate_masks(image)
        return result.masks, result.predicted_iou


def _device_safe_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                             iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms`` with scores/categories moved to the boxes' device
    (segment-anything 1.0 passes CPU categories with CUDA boxes)."""
    return batched_nms(boxes, scores.to(boxes.device), idxs.to(boxes.device), iou_threshold)


@SE_PROVIDERS.register_module(name='sam_amg_reference')
class SamAMGReferenceProvider(_SamProviderBase):
    """segment-anything's ``SamAutomaticMaskGenerator`` composed into an SE map.

    Same arguments as ``sam_amg`` (no ``fast_decoder``). The library's batched
    NMS device bug (1.0) is worked around by passing a device-safe
    ``batched_nms`` into its module while it runs.
    """

    name = 'sam_amg_reference'

    def __init__(self, sam: Sam | dict[str, Any], overlap: str = 'smallest_on_top',
                 autocast_dtype: str | None = None, **amg_kwargs: Any) -> None:
        super().__init__(sam, overlap, autocast_dtype, **amg_kwargs)
        self.generator = SamAutomaticMaskGenerator(self.model, output_mode='binary_mask',
                                                   **self.amg_params)

    def _masks(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        original = library_amg.batched_nms
        library_amg.batched_nms = _device_safe_batched_nms
        try:
            records = self.generator.generate(image)
        finally:
            library_amg.batched_nms = original
        if not records:
            return np.zeros((0, *image.shape[:2]), dtype=bool), np.zeros(0, dtype=np.float32)
        return (np.stack([r['segmentation'] for r in records]),
                np.array([r['predicted_iou'] for r in records], dtype=np.float32))


@SE_PROVIDERS.register_module(name='felzenszwalb')
class FelzenszwalbProvider(SEProvider):
    """Felzenszwalb-Huttenlocher graph segmentation (``skimage.segmentation.felzenszwalb``).

    A full partition: every pixel belongs to a segment, ids renumbered 1..K.

    Args:
        scale: Higher means larger segments.
        sigma: Gaussian pre-smoothing (pixels).
        min_size: Minimum segment size (pixels), enforced in post-processing.
        overlap: Accepted for a uniform config; irrelevant for a partition.
    """

    name = 'felzenszwalb'

    def __init__(self, scale: float = 100.0, sigma: float = 0.8, min_size: int = 50,
                 overlap: str | None = None) -> None:
        if overlap is not None:
            check_overlap_rule(overlap)
        self.scale, self.sigma, self.min_size = float(scale), float(sigma), int(min_size)

    @property
    def params(self) -> dict[str, Any]:
        return dict(provider=self.name, scale=self.scale, sigma=self.sigma,
                    min_size=self.min_size)

    def _compute(self, image: np.ndarray) -> np.ndarray:
        labels = felzenszwalb(image, scale=self.scale, sigma=self.sigma, min_size=self.min_size,
                              channel_axis=-1)
        return renumber_se_map(labels.astype(np.int64) + 1)


@SE_PROVIDERS.register_module(name='slic')
class SlicProvider(SEProvider):
    """SLIC superpixels (``skimage.segmentation.slic``, k-means in Lab space).

    A full partition renumbered 1..K (K is about ``n_segments``).

    Args:
        n_segments: Approximate number of superpixels.
        compactness: Colour vs space trade-off (higher = more square).
        sigma: Gaussian pre-smoothing (pixels).
        overlap: Accepted for a uniform config; irrelevant for a partition.
    """

    name = 'slic'

    def __init__(self, n_segments: int = 100, compactness: float = 10.0, sigma: float = 1.0,
                 overlap: str | None = None) -> None:
        if overlap is not None:
            check_overlap_rule(overlap)
        self.n_segments, self.compactness = int(n_segments), float(compactness)
        self.sigma = float(sigma)

    @property
    def params(self) -> dict[str, Any]:
        return dict(provider=self.name, n_segments=self.n_segments,
                    compactness=self.compactness, sigma=self.sigma)

    def _compute(self, image: np.ndarray) -> np.ndarray:
        labels = slic(image, n_segments=self.n_segments, compactness=self.compactness,
                      sigma=self.sigma, start_label=1, channel_axis=-1)
        return renumber_se_map(labels.astype(np.int64))
