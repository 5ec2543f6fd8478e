"""Dense CRF refinement of CAMs (fully connected CRF, Kraehenbuehl & Koltun 2011).

Follows the official S2C code (``tools/imutils.py``: ``_crf_with_alpha`` and
``crf_inference``, the PSA recipe): the scores are ``[bg, CAM_1, ..., CAM_K]``
with ``bg = (1 - max_k CAM_k) ** alpha``, the unary energy is
``-log(clip(score, 1e-5, 1))`` (pydensecrf's ``unary_from_softmax`` applied to
these unnormalised scores; a per-pixel constant does not change mean-field
inference, so normalising first would give the same result), and mean-field
inference runs 10 iterations with a Gaussian kernel (sxy 3, compat 3) and a
bilateral kernel (sxy 80, srgb 13, compat 10). The official code is called
with alpha in {6, 10, 24}; its default is 10.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # the compiled extension of pydensecrf2 (module `pydensecrf`); reported when used
    import pydensecrf.densecrf as dcrf
except ImportError as _err:  # pragma: no cover - install problem
    dcrf, _DCRF_ERROR = None, _err

#: Lower clip of the scores before ``-log`` (pydensecrf ``unary_from_softmax`` default).
UNARY_CLIP = 1e-5


@dataclass(frozen=True)
class CRFParams:
    """Dense-CRF parameters (defaults = official S2C/PSA values).

    Attributes:
        alpha: Exponent of the background score ``(1 - max CAM) ** alpha``;
            larger alpha = less background. Official values 6, 10, 24.
        iterations: Mean-field iterations.
        gaussian_sxy: Spatial std (pixels) of the smoothness kernel.
        gaussian_compat: Potts weight of the smoothness kernel.
        bilateral_sxy: Spatial std (pixels) of the appearance kernel.
        bilateral_srgb: Colour std (0-255 RGB units) of the appearance kernel.
        bilateral_compat: Potts weight of the appearance kernel.
        scale_factor: Divides both spatial stds (official ``scale_factor``, 1
            at original resolution).
    """

    alpha: float = 10.0
    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    scale_factor: float = 1.0


def crf_inference(image: np.ndarray, scores: np.ndarray,
                  params: CRFParams | None = None) -> np.ndarray:
    """Mean-field dense CRF on per-label scores.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image (original resolution).
        scores: ``(L, H, W)`` non-negative per-label scores (probabilities or
            unnormalised); the unary is ``-log(clip(scores, 1e-5, 1))``.
        params: Kernel parameters and iteration count (``alpha`` unused here);
            None = official defaults.

    Returns:
        np.ndarray: ``(L, H, W)`` float32 marginal probabilities (sum to 1 over L).

    Raises:
        ValueError: When the image is not ``(H, W, 3)`` uint8 or its size
            differs from the scores.
        ImportError: When ``pydensecrf`` (package ``pydensecrf2``) is missing.
    """
    if dcrf is None:  # pragma: no cover - install problem
        raise ImportError('dense CRF needs the pydensecrf module: pip install pydensecrf2 (the '
                          'original pydensecrf does not build on Python 3.11/numpy 2)'
                          ) from _DCRF_ERROR
    image = np.asarray(image)
    scores = np.asarray(scores, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'CRF image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}')
    if scores.ndim != 3 or scores.shape[1:] != image.shape[:2]:
        raise ValueError(f'CRF scores {scores.shape} must be (L, H, W) with (H, W) = image size '
                         f'{image.shape[:2]}')
    params = params or CRFParams()
    n_labels, h, w = scores.shape
    d = dcrf.DenseCRF2D(w, h, n_labels)
    unary = -np.log(np.clip(scores, UNARY_CLIP, 1.0)).reshape(n_labels, -1)
    d.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    d.addPairwiseGaussian(sxy=params.gaussian_sxy / params.scale_factor,
                          compat=params.gaussian_compat)
    d.addPairwiseBilateral(sxy=params.bilateral_sxy / params.scale_factor,
                           srgb=params.bilateral_srgb, rgbim=np.array(image, order='C'),
                           compat=params.bilateral_compat)
    q = d.inference(int(params.iterations))
    return np.asarray(q, dtype=np.float32).reshape(n_labels, h, w)


def background_scores(cams: np.ndarray, alpha: float) -> np.ndarray:
    """Stack the background score in front of the CAMs.

    Args:
        cams: ``(K, H, W)`` CAMs in [0, 1].
        alpha: Background exponent.

    Returns:
        np.ndarray: ``(K + 1, H, W)`` float32 ``[(1 - max_k CAM_k) ** alpha, CAM_1..K]``
        (background = 1 everywhere when K = 0).
    """
    cams = np.asarray(cams, dtype=np.float32)
    top = cams.max(axis=0) if cams.shape[0] else np.zeros(cams.shape[1:], np.float32)
    bg = np.power(np.clip(1.0 - top, 0.0, 1.0), alpha)[None]
    return np.concatenate([bg, cams], axis=0).astype(np.float32)


def crf_refine_cams(image: np.ndarray, cams: np.ndarray, keys: np.ndarray | list[int],
                    params: CRFParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense CRF on CAMs with an ``alpha``-powered background (official ``_crf_with_alpha``).

    Args:
        image: ``(H, W, 3)`` uint8 RGB image at the CAMs' resolution.
        cams: ``(K, H, W)`` CAMs in [0, 1] of the image's present classes.
        keys: ``(K,)`` 0-based foreground class indices of ``cams``.
        params: CRF parameters (None = official defaults, alpha 10);
            ``params.alpha`` is the background exponent.

    Returns:
        tuple: ``probs`` ``(K + 1, H, W)`` float32 CRF marginals, channel 0 =
        background, channel ``k + 1`` = class ``keys[k]``; and ``label``
        ``(H, W)`` int64 label map (0 background, ``keys[k] + 1`` otherwise;
        ties go to the lower channel).
    """
    params = params or CRFParams()
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    cams = np.asarray(cams, dtype=np.float32)
    if cams.shape[0] != keys.shape[0]:
        raise ValueError(f'{cams.shape[0]} CAMs but {keys.shape[0]} keys')
    scores = background_scores(cams, params.alpha)
    if keys.shape[0] == 0:  # background only: nothing to decide
        return np.ones_like(scores), np.zeros(cams.shape[1:], np.int64)
    probs = crf_inference(image, scores, params)
    label_of_channel = np.concatenate([[0], keys + 1])
    return probs, label_of_channel[probs.argmax(axis=0)]
