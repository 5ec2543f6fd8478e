"""CAM peaks used as SAM point prompts (CPM step 2; official ``model_s2c.py`` 230-258).

Two rules, both from the same local maxima: the CAM is smoothed with a
``filter_size`` maximum filter (zero padding), local maxima of the smoothed
map are found with scikit-image's ``peak_local_max(min_distance=...)`` (which
also excludes a border of ``min_distance`` pixels and returns the peaks by
decreasing smoothed value), and kept where the *raw* CAM exceeds
``threshold``. The global maximum of the raw CAM always comes first.

- ``'snapped'`` (default): local maxima closer than ``min_distance`` to the
  global maximum are dropped as its duplicates, and every kept peak is moved
  to the largest raw CAM value inside its ``filter_size`` window. The maximum
  filter turns a maximum into a ``filter_size`` plateau on which
  ``peak_local_max`` returns the plateau's first (top-left) pixel, one pixel
  diagonal from the true maximum; snapping prompts SAM at the maximum itself,
  and a genuine peak far from a global maximum in the excluded border is kept.
  A CAM whose global maximum is not above ``threshold`` (e.g. all zero: the class
  has no activation in the crop) has no peak and gets no prompt.
- ``'official'``: exactly the official points: the first thresholded local
  maximum is always dropped (assumed to be the global maximum), and peaks stay
  where ``peak_local_max`` put them (plateau corners). When the global maximum
  lies in the excluded border, the dropped "first" peak is a genuine one. The
  global maximum is kept whatever its value, so an all-zero CAM is prompted at
  pixel (0, 0) (official ``model_s2c.py`` 240-246: ``argmax`` of the CAM).

Two implementations give the same peaks in the same order:

- :func:`find_peaks`: one CAM, numpy / SciPy / scikit-image; the reference.
- :func:`batched_find_peaks`: a batch of CAMs as one torch tensor, on the CAMs'
  device (CPU or CUDA), with separable window maxima instead of SciPy's filters
  and scikit-image's greedy ``ensure_spacing`` reproduced by parallel rounds (see
  :func:`_ensure_spacing`). Used by :func:`~s2c.models.cpm.prompts.peak_prompts`.
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

PEAK_RULES = ('snapped', 'official')


def find_peaks(cam: np.ndarray, threshold: float = 0.5, min_distance: int = 20,
               filter_size: int = 3, rule: str = 'snapped') -> np.ndarray:
    """Global maximum plus local maxima of one normalised CAM (see the module docstring).

    Args:
        cam: ``(H, W)`` CAM in [0, 1] (crop frame).
        threshold: ``tau`` (S2C: 0.5); a local maximum is kept where the raw CAM
            is above it.
        min_distance: Minimum distance between peaks and excluded border, pixels (S2C: 20).
        filter_size: Maximum-filter size (S2C: 3).
        rule: ``'snapped'`` or ``'official'``.

    Returns:
        np.ndarray: ``(N, 2)`` int64 ``(row, col)`` peaks, global maximum first,
        then local maxima by decreasing filtered value; ``N >= 1`` for ``'official'``,
        ``N = 0`` for ``'snapped'`` when the CAM's maximum is not above ``threshold``.

    Raises:
        ValueError: For an unknown ``rule``.
    """
    if rule not in PEAK_RULES:
        raise ValueError(f'unknown peak rule {rule!r}; choose one of {PEAK_RULES}')
    cam = np.asarray(cam, dtype=np.float32)
    top = np.array(np.unravel_index(int(np.argmax(cam)), cam.shape), dtype=np.int64)
    filtered = ndi.maximum_filter(cam, size=filter_size, mode='constant')
    local = peak_local_max(filtered, min_distance=min_distance).reshape(-1, 2).astype(np.int64)
    if rule == 'official':
        local = local[cam[local[:, 0], local[:, 1]] > threshold][1:]
    elif cam[top[0], top[1]] <= threshold:
        return np.zeros((0, 2), np.int64)  # no activation above tau: no prompt
    elif local.size:
        local = _snap_to_raw_maximum(cam, local, filter_size)
        local = local[cam[local[:, 0], local[:, 1]] > threshold]
        local = local[np.sqrt(((local - top) ** 2).sum(axis=1)) >= min_distance]
    return np.concatenate([top[None], local.reshape(-1, 2)], axis=0)


def _snap_to_raw_maximum(cam: np.ndarray, peaks: np.ndarray, size: int) -> np.ndarray:
    """Move each ``(row, col)`` peak to the largest raw CAM value within its ``size`` window."""
    r = size // 2
    h, w = cam.shape
    out = peaks.copy()
    for i, (y, x) in enumerate(peaks):
        y0, x0 = max(y - r, 0), max(x - r, 0)
        window = cam[y0:min(y + r + 1, h), x0:min(x + r + 1, w)]
        dy, dx = np.unravel_index(int(np.argmax(window)), window.shape)
        out[i] = (y0 + dy, x0 + dx)
    return out


# ----------------------------------------------------------------------------- torch
def batched_find_peaks(cams: torch.Tensor, threshold: float = 0.5, min_distance: int = 20,
                       filter_size: int = 3, rule: str = 'snapped'
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`find_peaks` of every map of a batch, in torch on the maps' device.

    Same rules and same peaks, in the same order, as :func:`find_peaks` (official
    S2C ``model_s2c.py`` 230-258 on scikit-image 0.26 ``peak_local_max``):

    1. ``filtered``: ``filter_size`` maximum filter of the float32 CAM, zero
       outside (SciPy ``maximum_filter(mode='constant', cval=0)``; for an even
       size the window is ``[i - size // 2, i + size - 1 - size // 2]`` like SciPy's).
    2. ``peak_local_max(filtered, min_distance)``: candidates are pixels equal to
       the maximum of their ``2 * min_distance + 1`` window (edge-replicated,
       i.e. the window clipped to the map), above the map's minimum
       (``threshold_abs=None``), outside a border of ``min_distance`` pixels; none
       when the whole map equals its window maxima (a "trivial" map, e.g. constant);
       for ``min_distance == 0`` every pixel above the minimum. Candidates are
       ordered by decreasing value, ties in raster order (stable ``argsort``), and
       for ``min_distance > 1`` thinned greedily in that order: a candidate is
       dropped when an earlier kept one is at Chebyshev distance
       ``< min_distance`` (``ensure_spacing``, ``p_norm=inf``).
    3. The global maximum (first in raster order) comes first; then the rule of
       the module docstring (``'snapped'``: snap to the raw maximum of the
       ``filter_size // 2`` window, keep raw values ``> threshold`` at Euclidean
       distance ``>= min_distance`` from the global maximum, nothing at all when the
       global maximum is ``<= threshold``; ``'official'``: keep raw values
       ``> threshold``, drop the first).

    Comparisons with ``threshold`` follow numpy 2's promotion (NEP 50): float32
    for a Python number, float64 for a numpy float64 scalar.

    Args:
        cams: ``(N, H, W)`` CAMs in [0, 1] (crop frame), any float dtype (compared
            in float32), CPU or CUDA; finite (no NaN).
        threshold: ``tau`` (S2C: 0.5).
        min_distance: Minimum distance between peaks and excluded border, pixels
            (S2C: 20); an integer ``>= 0``.
        filter_size: Maximum-filter size (S2C: 3); an integer ``>= 1``.
        rule: ``'snapped'`` or ``'official'`` (:data:`PEAK_RULES`).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: on the device of ``cams``:

        - peaks: ``(P, 2)`` int64 ``(row, col)`` crop pixels of all maps.
        - map_index: ``(P,)`` int64 map of each peak, non-decreasing; the peaks of
          map ``n`` are ``peaks[map_index == n]``, equal to
          ``find_peaks(cams[n], ...)`` row for row.

    Raises:
        ValueError: For an unknown ``rule``, ``cams`` not 3-D, ``min_distance < 0``
            or ``filter_size < 1``.
        TypeError: For a non-integer ``min_distance`` or ``filter_size``.
    """
    if rule not in PEAK_RULES:
        raise ValueError(f'unknown peak rule {rule!r}; choose one of {PEAK_RULES}')
    if cams.dim() != 3:
        raise ValueError(f'cams must be (N, H, W), got shape {tuple(cams.shape)}')
    min_distance, filter_size = operator.index(min_distance), operator.index(filter_size)
    if min_distance < 0 or filter_size < 1:
        raise ValueError(f'need min_distance >= 0 and filter_size >= 1, got '
                         f'{min_distance} and {filter_size}')
    cams = cams.float()
    n, h, w = cams.shape
    device = cams.device
    if n == 0:
        return (torch.zeros(0, 2, dtype=torch.long, device=device),
                torch.zeros(0, dtype=torch.long, device=device))
    top_flat = cams.flatten(1).argmax(1)  # first maximum in raster order
    top = torch.stack([top_flat // w, top_flat % w], 1)
    maps = torch.arange(n, device=device)

    lo = -(filter_size // 2)
    filtered = _window_max(cams, lo, lo + filter_size - 1, 0.0)
    local, local_map = _peak_local_max(filtered, min_distance)
    if rule == 'official':
        keep = _above(cams[local_map, local[:, 0], local[:, 1]], threshold)
        local, local_map = local[keep], local_map[keep]
        keep = _rank_in_map(local_map, n) > 0  # drop each map's first thresholded peak
        local, local_map = local[keep], local_map[keep]
        top_map = maps
    else:
        active = _above(cams[maps, top[:, 0], top[:, 1]], threshold)  # else: no prompt
        keep = active[local_map]
        local, local_map = _snap_to_raw_maximum_batched(
            cams, local[keep], local_map[keep], filter_size)
        keep = _above(cams[local_map, local[:, 0], local[:, 1]], threshold)
        local, local_map = local[keep], local_map[keep]
        keep = ((local - top[local_map]) ** 2).sum(1) >= min_distance ** 2
        local, local_map = local[keep], local_map[keep]
        top, top_map = top[active], maps[active]
    # global maximum first, then the local peaks of the same map in their order
    peaks = torch.cat([top, local])
    map_index = torch.cat([top_map, local_map])
    order = torch.sort(map_index, stable=True).indices
    return peaks[order], map_index[order]


def _above(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """``values > threshold`` in numpy 2's dtype for float32 ``values`` and this ``threshold``."""
    if isinstance(threshold, (np.generic, np.ndarray)):
        dtype = np.result_type(np.float32, threshold)
        if dtype != np.float32:
            return values.to(getattr(torch, dtype.name)) > float(threshold)
    return values > float(threshold)


def _window_max(x: torch.Tensor, lo: int, hi: int, fill: float | bool,
                dims: tuple[int, ...] = (-2, -1)) -> torch.Tensor:
    """Maximum over the window ``[i + lo, i + hi]`` along each of ``dims`` (``fill`` outside).

    Separable and by doubling (``O(log(hi - lo + 1))`` elementwise maxima per
    axis); exact, for float and bool tensors. Requires ``lo <= 0`` and ``hi >= -1``.
    """
    k = hi - lo + 1
    for dim in dims:
        size = x.shape[dim]
        pad_shape = list(x.shape)
        pad_shape[dim] = -lo
        parts = [x.new_full(pad_shape, fill), x.narrow(dim, 0, size + min(hi, 0))]
        if hi > 0:
            pad_shape[dim] = hi
            parts.append(x.new_full(pad_shape, fill))
        m = torch.cat(parts, dim)  # m[j] = x[j + lo], length size + k - 1
        span = 1
        while 2 * span <= k:
            length = m.shape[dim] - span
            m = torch.maximum(m.narrow(dim, 0, length), m.narrow(dim, span, length))
            span *= 2
        x = torch.maximum(m.narrow(dim, 0, size), m.narrow(dim, k - span, size))
    return x


def _peak_local_max(image: torch.Tensor, min_distance: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image ``peak_local_max(image[n], min_distance)`` (default arguments) of every map.

    scikit-image drops every candidate of a "trivial" map (each pixel equal to its
    window maximum); such a map is constant, so ``image > image.min()`` already
    leaves no candidate and the check is not needed.

    Args:
        image: ``(N, H, W)`` float32 maps.
        min_distance: Window half-size, excluded border and spacing, pixels.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(P, 2)`` int64 ``(row, col)`` peaks and
        their ``(P,)`` map index; by map, then decreasing value, ties in raster order.
    """
    n, h, w = image.shape
    b = min_distance  # exclude_border=True: a border of min_distance pixels
    threshold = image.flatten(1).amin(1)[:, None, None]  # threshold_abs=None: image.min()
    inner = image[:, b:max(h - b, b), b:max(w - b, b)]
    mask = inner > threshold
    if min_distance > 0 and h * w > 1:  # else a 1-pixel footprint (or map): image > threshold
        mask &= inner == _window_max(image, -b, b, float('-inf'))[:, b:max(h - b, b),
                                                                    b:max(w - b, b)]
    map_index, row, col = torch.nonzero(mask, as_tuple=True)  # by map, then raster order
    row, col = row + b, col + b
    key = 0.0 - image[map_index, row, col]  # 0 - v: -0.0 and 0.0 tie, as in numpy's argsort
    order = torch.sort(key, stable=True).indices
    order = order[torch.sort(map_index[order], stable=True).indices]
    peaks, map_index = torch.stack([row, col], 1)[order], map_index[order]
    if min_distance > 1:
        keep = _ensure_spacing(peaks, map_index, -key[order], (n, h, w), min_distance)
        peaks, map_index = peaks[keep], map_index[keep]
    return peaks, map_index


# equal-value runs of up to this many candidates are thinned with pairwise distances (in
# length buckets, up to _PAIRWISE_ELEMENTS_MAX pair entries per bucket); longer runs (large
# plateaus) with window maxima over the whole map
_PAIRWISE_BUCKETS = ((2, 9), (10, 64))
_PAIRWISE_ELEMENTS_MAX = 1 << 22


def _ensure_spacing(peaks: torch.Tensor, map_index: torch.Tensor, values: torch.Tensor,
                    shape: tuple[int, int, int], spacing: int) -> torch.Tensor:
    """scikit-image ``ensure_spacing(p_norm=inf)`` of the sorted peak candidates of every map.

    scikit-image visits the candidates in order (decreasing value, ties in raster
    order) and keeps one unless an already kept candidate lies at Chebyshev distance
    ``< spacing``: the lexicographically-first maximal independent set in that
    order. Two candidates that close are inside each other's maximum-filter window
    and have the same value, so only candidates of one run (same map, same value:
    consecutive in the order, visited in raster order) can exclude each other.
    Runs of one candidate are kept; the others are thinned in parallel rounds
    (:func:`_greedy_rounds`), short runs with pairwise distances, long runs
    (plateaus) with window maxima on the map grid, where "earlier" is the rows above
    and the pixels to the left.

    Args:
        peaks: ``(P, 2)`` int64 ``(row, col)`` candidates, by map in visiting order.
        map_index: ``(P,)`` int64 non-decreasing map of each candidate.
        values: ``(P,)`` float32 value of each candidate.
        shape: ``(N, H, W)`` of the maps.
        spacing: Minimum Chebyshev distance between kept candidates, ``> 1``.

    Returns:
        torch.Tensor: ``(P,)`` bool, whether each candidate is kept.
    """
    _, h, w = shape
    device = peaks.device
    keep = torch.ones(len(peaks), dtype=torch.bool, device=device)
    if len(peaks) < 2:
        return keep
    new_run = torch.ones_like(keep)
    new_run[1:] = (map_index[1:] != map_index[:-1]) | (values[1:] != values[:-1])
    run = torch.cumsum(new_run, 0) - 1
    run_length = torch.bincount(run)
    length = run_length[run]
    rank = _rank_in_map(run, len(run_length))  # position in the run
    left = length > 1
    for lo, hi in _PAIRWISE_BUCKETS:
        in_bucket = (length >= lo) & (length <= hi)
        sel = torch.nonzero(in_bucket).squeeze(1)
        if not sel.numel():
            continue
        runs, group = torch.unique_consecutive(run[sel], return_inverse=True)
        k = int(run_length[runs].max())
        if len(runs) * k * k > _PAIRWISE_ELEMENTS_MAX:
            continue  # left to the grid
        pos = torch.zeros(len(runs), k, 2, dtype=torch.int32, device=device)
        pos[group, rank[sel]] = peaks[sel].int()
        valid = torch.zeros(len(runs), k, dtype=torch.bool, device=device)
        valid[group, rank[sel]] = True
        near = ((pos[:, :, None, 0] - pos[:, None, :, 0]).abs() < spacing) \
            & ((pos[:, :, None, 1] - pos[:, None, :, 1]).abs() < spacing)
        near &= valid[:, :, None] & valid[:, None] \
            & ~torch.eye(k, dtype=torch.bool, device=device)
        earlier = near.tril(-1)  # [i, j]: j visited before i
        kept = _greedy_rounds(valid, functools.partial(_any_related, near),
                              functools.partial(_any_related, earlier))
        keep[sel] = kept[group, rank[sel]]
        left &= ~in_bucket
    sel = torch.nonzero(left).squeeze(1)
    if sel.numel():
        maps, group = torch.unique_consecutive(map_index[sel], return_inverse=True)
        grid = torch.zeros(len(maps), h, w, dtype=torch.bool, device=device)
        grid[group, peaks[sel, 0], peaks[sel, 1]] = True
        r = spacing - 1
        kept = _greedy_rounds(grid, lambda g, flags: _window_max(flags, -r, r, False),
                              lambda g, flags: torch.maximum(  # rows above, left in the row
                                  _window_max(_window_max(flags, -r, r, False, (-1,)),
                                              -r, -1, False, (-2,)),
                                  _window_max(flags, -r, -1, False, (-1,))))
        keep[sel] = kept[group, peaks[sel, 0], peaks[sel, 1]]
    return keep


def _greedy_rounds(candidates: torch.Tensor,
                   near_any: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   earlier_any: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                   ) -> torch.Tensor:
    """Parallel rounds of the greedy spacing (see :func:`_ensure_spacing`).

    Args:
        candidates: ``(G, ...)`` bool candidates of ``G`` groups.
        near_any: ``(A,)`` indices of the groups still undecided and their ``(A, ...)``
            bool flags -> ``(A, ...)`` bool: where a flagged candidate is too close.
        earlier_any: The same for a flagged candidate visited earlier.

    Returns:
        torch.Tensor: ``(G, ...)`` bool kept candidates.
    """
    undecided = candidates.clone()
    kept = torch.zeros_like(candidates)
    active = torch.nonzero(undecided.flatten(1).any(1)).squeeze(1)
    while active.numel():
        und, kpt = undecided[active], kept[active]
        drop = und & near_any(active, kpt)
        new = und & ~earlier_any(active, und | kpt)
        kept[active] = kpt | new
        und &= ~(drop | new)
        undecided[active] = und
        active = active[und.flatten(1).any(1)]
    return kept


def _any_related(relation: torch.Tensor, groups: torch.Tensor, flags: torch.Tensor
                 ) -> torch.Tensor:
    """``(A, K)`` bool: whether ``relation[groups]`` (``(A, K, K)``) links to a flagged entry."""
    return (relation[groups] & flags[:, None]).any(-1)


def _rank_in_map(map_index: torch.Tensor, num_maps: int) -> torch.Tensor:
    """Position of each entry among the entries of its map (``map_index`` non-decreasing)."""
    counts = torch.bincount(map_index, minlength=num_maps)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(len(map_index), device=map_index.device) - starts[map_index]


def _snap_to_raw_maximum_batched(cams: torch.Tensor, peaks: torch.Tensor,
                                 map_index: torch.Tensor, size: int
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_snap_to_raw_maximum` of ``(P, 2)`` peaks of the ``(N, H, W)`` maps ``map_index``.

    The window ``[y - size // 2, y + size // 2]`` is clipped to the map; ties go to
    the first pixel in the window's raster order (numpy ``argmax``).
    """
    r = size // 2
    _, h, w = cams.shape
    offsets = torch.arange(-r, r + 1, device=cams.device)
    rows = (peaks[:, 0, None] + offsets).repeat_interleave(2 * r + 1, 1)  # (P, K) raster
    cols = (peaks[:, 1, None] + offsets).repeat(1, 2 * r + 1)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    values = cams[map_index[:, None], rows.clamp(0, h - 1), cols.clamp(0, w - 1)]
    best = values.masked_fill(~inside, float('-inf')).amax(1, keepdim=True)
    first = (inside & (values == best)).to(torch.uint8).argmax(1, keepdim=True)
    return torch.cat([rows.gather(1, first), cols.gather(1, first)], 1), map_index
