"""Pseudo-label rules: CAMs (+ image / SE map) -> label map, as pure array functions.

Every rule returns ``(label, score)``:

- ``label``: ``(H, W)`` int64, 0 background, ``c + 1`` for 0-based foreground
  class ``c`` (VOC: 1..20);
- ``score``: ``(H, W)`` float32 in [0, 1], the confidence of the pixel's label,
  which :func:`apply_ignore` turns into 255 ("ignore") below a threshold
  (``--ignore-below P``). What the score is differs per rule and is stated in
  each docstring.

CAMs are ``(K, H, W)`` float arrays in [0, 1] (original image resolution) with
``keys`` ``(K,)`` their 0-based foreground class indices, as stored by
:mod:`s2c.cam.cam_io`. The registered methods that apply these rules in a job
are in :mod:`s2c.pseudo_labels.methods`.
"""
from __future__ import annotations

import numpy as np

from s2c.cam.crf import CRFParams, crf_refine_cams
from s2c.evaluation.threshold_search import cam_to_label
from s2c.structures import IGNORE_INDEX


def _check(cams: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cams = np.asarray(cams, dtype=np.float32)
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise ValueError(f'CAMs must be (K, H, W) with K = len(keys) = {len(keys)}, '
                         f'got {cams.shape}')
    return cams, keys


def threshold_labels(cams: np.ndarray, keys: np.ndarray | list[int],
                     bg_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant background score + argmax (the CAM-evaluation rule).

    A pixel is background when ``max_k CAM_k <= bg_threshold`` (ties go to
    background), else the class of the largest CAM (ties: first key). Same
    rule as :func:`s2c.evaluation.threshold_search.cam_to_label`, which it
    calls, so pseudo-labels match the CAM mIoU that ``tools/test.py`` reports
    at the same threshold.

    Score: the winning CAM value for foreground pixels, ``1 - max_k CAM_k``
    for background pixels (the background score of the CRF rule with
    ``alpha = 1``). ``--ignore-below P`` therefore ignores foreground pixels
    whose CAM is in ``(t, P)`` and background pixels whose ``max CAM`` lies in
    ``(1 - P, t]``: an uncertainty band around the threshold ``t``.

    Args:
        cams: ``(K, H, W)`` CAMs in [0, 1].
        keys: ``(K,)`` 0-based foreground class indices.
        bg_threshold: Background score ``t`` in [0, 1].

    Returns:
        tuple: ``label`` ``(H, W)`` int64 and ``score`` ``(H, W)`` float32.
    """
    cams, keys = _check(cams, keys)
    label = cam_to_label(cams, keys, bg_threshold).astype(np.int64)
    top = cams.max(axis=0) if cams.shape[0] else np.zeros(cams.shape[1:], np.float32)
    score = np.where(label > 0, top, 1.0 - top).astype(np.float32)
    return label, score


def crf_labels(image: np.ndarray, cams: np.ndarray, keys: np.ndarray | list[int],
               params: CRFParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense CRF on ``[(1 - max CAM) ** alpha, CAMs]``, then argmax.

    See :mod:`s2c.cam.crf` for the model (official S2C ``_crf_with_alpha``).
    No background threshold is involved: ``params.alpha`` sets the balance.

    Score: the CRF marginal probability of the winning label (in
    ``[1 / (K + 1), 1]``); ``--ignore-below P`` ignores pixels where the CRF is
    less sure than ``P``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image at the CAMs' resolution.
        cams: ``(K, H, W)`` CAMs in [0, 1].
        keys: ``(K,)`` 0-based foreground class indices.
        params: CRF parameters (None = official defaults, alpha 10).

    Returns:
        tuple: ``label`` ``(H, W)`` int64 and ``score`` ``(H, W)`` float32.
    """
    cams, keys = _check(cams, keys)
    probs, label = crf_refine_cams(image, cams, keys, params)
    return label, probs.max(axis=0).astype(np.float32)


def se_merge_labels(cams: np.ndarray, keys: np.ndarray | list[int], se_map: np.ndarray,
                    bg_threshold: float, *, majority: float = 0.5,
                    coverage: float = 0.85) -> tuple[np.ndarray, np.ndarray]:
    """Snap the CAM label map to SAM segments (the SEPL rule on a cached SE map).

    1. CAM label map ``L`` = :func:`threshold_labels` at ``bg_threshold``. The
       *CAM region* of foreground class ``c`` is ``R_c = {L == c}``; it is the
       region after the argmax, so regions of different classes are disjoint.
    2. For every segment ``S`` of the SE map (id > 0; segments are disjoint in
       an SE map) and every class ``c`` with a non-empty ``R_c``:
       ``purity = |S & R_c| / |S|`` and ``cover = |S & R_c| / |R_c|``.
       ``S`` *qualifies* for ``c`` when ``purity > majority`` (more than half
       of the segment lies in the region) or ``cover >= coverage`` (the segment
       holds at least 85 % of the region).
    3. A segment that qualifies for one or more classes is given, as a whole,
       the qualifying class with the largest ``purity`` (ties: the lowest class
       index). At most one class can pass the purity test, so several classes
       qualify only when the others pass the ``cover`` test (e.g. one large
       segment containing two small CAM regions).
    4. Pixels of segments that qualify for no class, and pixels no segment
       covers (SE id 0), keep their CAM label ``L``. Background is never
       assigned by a segment: the rule only moves foreground along segment
       boundaries. Decisions use ``L`` only, so they do not depend on the
       order of segments.

    Score: for pixels of a qualifying segment, that segment's ``purity`` for
    its class (so segments taken only through the ``cover`` rule have low
    scores); for all other pixels the :func:`threshold_labels` score.

    Args:
        cams: ``(K, H, W)`` CAMs in [0, 1].
        keys: ``(K,)`` 0-based foreground class indices.
        se_map: ``(H, W)`` integer SE map (uint16 as cached), 0 = no segment.
        bg_threshold: Background score of the CAM label map.
        majority: Purity above which a segment qualifies (0.5).
        coverage: Region fraction at or above which a segment qualifies (0.85).

    Returns:
        tuple: ``label`` ``(H, W)`` int64 and ``score`` ``(H, W)`` float32.

    Raises:
        ValueError: When the SE map's size differs from the CAMs' or it holds
            negative ids.
    """
    cams, keys = _check(cams, keys)
    se_map = np.asarray(se_map)
    if se_map.shape != cams.shape[1:]:
        raise ValueError(f'SE map size {se_map.shape} differs from CAM size {cams.shape[1:]}')
    if se_map.size and se_map.min() < 0:
        raise ValueError('SE map holds negative segment ids')
    label, score = threshold_labels(cams, keys, bg_threshold)
    if keys.size == 0 or not (se_map > 0).any():
        return label, score

    seg_ids, seg_idx = np.unique(se_map.ravel(), return_inverse=True)
    n_lab = int(label.max()) + 1
    counts = np.bincount(seg_idx * n_lab + label.ravel(),
                         minlength=len(seg_ids) * n_lab).reshape(len(seg_ids), n_lab)
    region = counts.sum(axis=0)                      # |R_c| over all pixels, covered or not
    counts = counts.astype(np.float64)
    seg_size = counts.sum(axis=1, keepdims=True)     # |S|
    purity = counts / np.maximum(seg_size, 1)
    qualifies = (counts > majority * seg_size) | (counts >= coverage * region[None])
    qualifies &= region[None] > 0
    qualifies[:, 0] = False                          # background is never assigned
    qualifies[seg_ids == 0] = False                  # uncovered pixels keep L
    has = qualifies.any(axis=1)
    choice = np.where(qualifies, purity, -1.0).argmax(axis=1)   # first max = lowest class

    seg_label = np.where(has, choice, -1)[seg_idx].reshape(label.shape)
    seg_score = purity[np.arange(len(seg_ids)), choice][seg_idx].reshape(label.shape)
    assigned = seg_label >= 0
    label = np.where(assigned, seg_label, label).astype(np.int64)
    score = np.where(assigned, seg_score, score).astype(np.float32)
    return label, score


def apply_ignore(label: np.ndarray, score: np.ndarray,
                 ignore_below: float | None) -> np.ndarray:
    """Mark low-confidence pixels as ignored.

    Args:
        label: ``(H, W)`` label map (0..C).
        score: ``(H, W)`` confidence of each pixel's label (see the rules).
        ignore_below: Pixels with ``score < ignore_below`` become 255; ``None``
            keeps every pixel.

    Returns:
        np.ndarray: ``(H, W)`` uint8 label map (0 background, 1..C, 255 ignore).

    Raises:
        ValueError: When ``label`` holds values outside [0, 254].
    """
    label = np.asarray(label)
    if label.size and (label.min() < 0 or label.max() >= IGNORE_INDEX):
        raise ValueError(f'label values must lie in [0, {IGNORE_INDEX - 1}], '
                         f'got [{label.min()}, {label.max()}]')
    out = label.astype(np.uint8)
    if ignore_below is not None:
        out[np.asarray(score) < ignore_below] = IGNORE_INDEX
    return out
