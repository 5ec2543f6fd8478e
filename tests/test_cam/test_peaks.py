"""Peak finder on synthetic CAMs: global max kept, border, min distance, threshold; the torch
batched peak finder equals the numpy reference."""
import functools
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

import s2c.cam.peaks as peaks_module
from s2c.cam.peaks import batched_find_peaks, find_peaks
from s2c.models.cpm.prompts import peak_prompts


def _blob(h, w, cy, cx, amp, sigma=3.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def test_global_max_first_and_local_maxima_above_tau():
    cam = _blob(100, 100, 30, 30, 1.0) + _blob(100, 100, 70, 70, 0.8) \
        + _blob(100, 100, 30, 75, 0.4)  # 0.4 < tau
    peaks = find_peaks(cam, threshold=0.5, min_distance=20)
    assert peaks.tolist() == [[30, 30], [70, 70]]


def test_min_distance_suppresses_close_peaks():
    cam = _blob(100, 100, 50, 40, 1.0) + _blob(100, 100, 50, 55, 0.9)  # 15 px apart
    assert find_peaks(cam, min_distance=20).tolist() == [[50, 40]]
    assert find_peaks(cam, min_distance=10).tolist() == [[50, 40], [50, 55]]


def test_border_peaks_excluded_but_global_max_kept():
    cam = _blob(100, 100, 5, 50, 1.0) + _blob(100, 100, 60, 60, 0.9) \
        + _blob(100, 100, 95, 20, 0.95)
    peaks = find_peaks(cam, threshold=0.5, min_distance=20)
    # the global max lies in the border (kept); the border blob at row 95 is not a local peak;
    # the interior peak survives (the official code would drop it as "first local max")
    assert peaks.tolist() == [[5, 50], [60, 60]]


def test_cam_without_activation_above_tau_has_no_peak():
    """A weak or all-zero CAM gets no prompt (snapped); the official rule prompts its argmax,
    which for an all-zero CAM is pixel (0, 0)."""
    cam = np.zeros((40, 40), np.float32)
    cam[12, 17] = 0.2
    assert find_peaks(cam).shape == (0, 2) and find_peaks(cam).dtype == np.int64
    assert find_peaks(cam, threshold=0.1).tolist() == [[12, 17]]
    assert find_peaks(np.zeros((8, 8))).shape == (0, 2)
    assert find_peaks(cam, rule='official').tolist() == [[12, 17]]
    assert find_peaks(np.zeros((8, 8)), rule='official').tolist() == [[0, 0]]


def test_a_class_without_peak_gets_no_prompt():
    cams = torch.zeros(2, 3, 40, 40)
    cams[0, 0, 10, 10] = 1.0
    cams[1, 2, 30, 5] = 1.0
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])  # classes 1 have all-zero CAMs
    img, cls, peaks = peak_prompts(cams, labels)
    assert (img, cls) == ([0, 1], [0, 2])
    assert [p.tolist() for p in peaks] == [[[10, 10]], [[30, 5]]]
    img, cls, _ = peak_prompts(cams, labels, rule='official')
    assert (img, cls) == ([0, 0, 1, 1], [0, 1, 1, 2])  # official: (0, 0) prompts for them


def test_official_rule_keeps_the_plateau_corner():
    """A 3x3 maximum filter turns the maximum at (30, 30) into a plateau (29..31, 29..31);
    peak_local_max returns its first pixel (29, 29): the official point, one pixel diagonal
    from the maximum. The snapped rule moves it back to (30, 30)."""
    cam = _blob(100, 100, 30, 30, 1.0) + _blob(100, 100, 70, 70, 0.8)
    assert find_peaks(cam, rule='official').tolist() == [[30, 30], [69, 69]]
    assert find_peaks(cam, rule='snapped').tolist() == [[30, 30], [70, 70]]
    with pytest.raises(ValueError, match='peak rule'):
        find_peaks(cam, rule='best')


def test_official_rule_drops_the_first_local_peak_even_far_from_the_global_max():
    """Global max in the excluded border (row 5): the first thresholded local peak is the
    blob at (60, 60), far away, and the official rule drops it; so only the global max and
    the third blob remain."""
    cam = _blob(100, 100, 5, 50, 1.0) + _blob(100, 100, 60, 60, 0.9) \
        + _blob(100, 100, 40, 25, 0.7)
    assert find_peaks(cam, rule='official').tolist() == [[5, 50], [39, 24]]
    assert find_peaks(cam, rule='snapped').tolist() == [[5, 50], [60, 60], [40, 25]]


# ------------------------------------------------------------------ torch: batched_find_peaks
_DEVICES = [pytest.param('cpu'),
            pytest.param('cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                          reason='needs CUDA'))]
# (shape, number of maps, map kinds): 868 maps, 10,416 over the 12 (min_distance, filter_size,
# rule) cases; the large maps avoid the plateau kinds on which scikit-image's spacing is slow
_MAP_SETS = [((16, 24), 120, tuple(range(8))), ((32, 32), 620, tuple(range(8))),
             ((64, 48), 110, tuple(range(8))), ((128, 128), 12, (1, 2, 3, 6, 7, 0)),
             ((256, 256), 6, (1, 2, 6, 7))]


def _synthetic_map(rng, shape, kind):
    """One float32 map in [0, 1] of a kind: 0 uniform noise; 1-2 Gaussian mixture; 3 quantised
    Gaussian mixture; 4 quantised noise; 5 constant blocks; 6 all-zero / constant / one flat
    rectangle; 7 smooth map whose maximum lies in the excluded border."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:
        m = rng.random(shape)
    elif kind in (1, 2, 3):
        m = np.zeros(shape)
        for _ in range(rng.integers(1, 6)):
            cy, cx = rng.uniform(-2, h + 1), rng.uniform(-2, w + 1)
            s = rng.uniform(1, max(h, w) / 4)
            m += rng.uniform(0.2, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        m /= m.max()
        if kind == 3:
            m = np.round(m * 4) / 4
    elif kind == 4:
        m = np.round(rng.random(shape) * 4) / 4
    elif kind == 5:
        bh, bw = rng.integers(2, 9, 2)
        blocks = np.round(rng.random((h // bh + 1, w // bw + 1)) * 3) / 3
        m = np.kron(blocks, np.ones((bh, bw)))[:h, :w]
    elif kind == 6:
        m = np.zeros(shape)
        variant = rng.integers(3)
        if variant == 1:
            m[:] = rng.random()
        elif variant == 2:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] = 1.0
    else:
        m = ndi.gaussian_filter(rng.random(shape), 2)
        m *= 0.8 / m.max()
        m[rng.integers(0, 3), rng.integers(0, w)] = 1.0
    return m.astype(np.float32)


@functools.cache
def _map_sets():
    rng = np.random.default_rng(2024)
    return [np.stack([_synthetic_map(rng, shape, kinds[i % len(kinds)]) for i in range(count)])
            for shape, count, kinds in _MAP_SETS]


@functools.cache
def _reference(min_distance, filter_size, rule):
    return [[find_peaks(m, 0.5, min_distance, filter_size, rule) for m in maps]
            for maps in _map_sets()]


def _assert_same_peaks(maps, reference, device, **kwargs):
    peaks, map_index = batched_find_peaks(torch.from_numpy(maps).to(device), **kwargs)
    assert peaks.device.type == device and peaks.dtype == map_index.dtype == torch.int64
    assert peaks.shape == (len(map_index), 2)
    peaks, map_index = peaks.cpu().numpy(), map_index.cpu().numpy()
    assert (np.diff(map_index) >= 0).all()
    for i, ref in enumerate(reference):
        np.testing.assert_array_equal(peaks[map_index == i], ref, err_msg=f'map {i} {kwargs}')


@pytest.mark.parametrize('device', _DEVICES)
@pytest.mark.parametrize('rule', ['snapped', 'official'])
@pytest.mark.parametrize('min_distance,filter_size', [(20, 3), (20, 1), (5, 3), (5, 1),
                                                      (1, 3), (1, 1)])
def test_batched_find_peaks_equals_find_peaks(min_distance, filter_size, rule, device):
    """Same points in the same order as the numpy reference on 868 maps per case (10,416 in
    all): noise, blobs, plateaus (quantised values, constant blocks and maps), all-zero maps
    and maxima in the excluded border."""
    kwargs = dict(threshold=0.5, min_distance=min_distance, filter_size=filter_size, rule=rule)
    for maps, reference in zip(_map_sets(), _reference(min_distance, filter_size, rule)):
        _assert_same_peaks(maps, reference, device, **kwargs)


@pytest.mark.parametrize('device', _DEVICES)
@pytest.mark.parametrize('min_distance,filter_size', [(0, 2), (2, 2), (2, 4), (3, 3)])
def test_batched_find_peaks_equals_find_peaks_other_sizes(min_distance, filter_size, device):
    """Even filter sizes (SciPy's asymmetric window), spacing 2 and 3, and min_distance 0."""
    rng = np.random.default_rng(7)
    maps = np.stack([_synthetic_map(rng, (24, 20), i % 8) for i in range(80)])
    for rule in ('snapped', 'official'):
        kwargs = dict(threshold=0.5, min_distance=min_distance, filter_size=filter_size,
                      rule=rule)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # skimage: min_distance < 1
            reference = [find_peaks(m, **kwargs) for m in maps]
        _assert_same_peaks(maps, reference, device, **kwargs)


@pytest.mark.parametrize('device', _DEVICES)
@pytest.mark.parametrize('path', ['pairwise', 'grid'])
@pytest.mark.parametrize('min_distance,filter_size', [(2, 1), (5, 3)])
def test_batched_find_peaks_spacing_paths_agree(min_distance, filter_size, path, device,
                                                monkeypatch):
    """Every run of equal-value candidates thinned by pairwise distances, or every one on
    the map grid (by default short runs take the first path, plateaus the second)."""
    if path == 'pairwise':
        monkeypatch.setattr(peaks_module, '_PAIRWISE_BUCKETS', ((2, 10 ** 9),))
        monkeypatch.setattr(peaks_module, '_PAIRWISE_ELEMENTS_MAX', 10 ** 12)
    else:
        monkeypatch.setattr(peaks_module, '_PAIRWISE_BUCKETS', ())
    rng = np.random.default_rng(11)
    maps = np.stack([_synthetic_map(rng, (24, 20), i % 8) for i in range(80)])
    for rule in ('snapped', 'official'):
        kwargs = dict(threshold=0.5, min_distance=min_distance, filter_size=filter_size,
                      rule=rule)
        _assert_same_peaks(maps, [find_peaks(m, **kwargs) for m in maps], device, **kwargs)


@pytest.mark.parametrize('device', _DEVICES)
def test_batched_find_peaks_hand_checked(device):
    """A 2x3 plateau of 1.0 at rows 3-4, cols 3-5, a peak 0.8 at (8, 8), 0.4 (< tau) at
    (8, 3), min_distance 2, filter size 1. Plateau ties go in raster order and the Chebyshev
    spacing (< 2) keeps (3, 3) and (3, 5), not (3, 4), (4, *). Both rules: global maximum
    (3, 3), then (3, 5) and (8, 8). The second map is all zero: 'snapped' gives nothing,
    'official' its argmax (0, 0)."""
    cams = torch.zeros(2, 12, 12, device=device)
    cams[0, 3:5, 3:6] = 1.0
    cams[0, 8, 8], cams[0, 8, 3] = 0.8, 0.4
    kwargs = dict(threshold=0.5, min_distance=2, filter_size=1)
    for rule, points, maps in [('snapped', [[3, 3], [3, 5], [8, 8]], [0, 0, 0]),
                               ('official', [[3, 3], [3, 5], [8, 8], [0, 0]], [0, 0, 0, 1])]:
        peaks, map_index = batched_find_peaks(cams, rule=rule, **kwargs)
        assert peaks.tolist() == points and map_index.tolist() == maps
        assert find_peaks(cams[0].cpu().numpy(), rule=rule, **kwargs).tolist() == points[:3]
    # the blob cases above: official plateau corner (69, 69), snapped back to (70, 70)
    cam = _blob(100, 100, 30, 30, 1.0) + _blob(100, 100, 70, 70, 0.8)
    cam = torch.as_tensor(cam, dtype=torch.float32, device=device)[None]
    assert batched_find_peaks(cam, rule='official')[0].tolist() == [[30, 30], [69, 69]]
    assert batched_find_peaks(cam, rule='snapped')[0].tolist() == [[30, 30], [70, 70]]
    # numpy 2 compares float32 CAMs with a Python float in float32, with np.float64 in float64
    cam03 = torch.zeros(1, 9, 9, device=device)
    cam03[0, 4, 4] = 0.3
    for threshold, points in [(0.3, []), (np.float64(0.3), [[4, 4]])]:
        assert batched_find_peaks(cam03, threshold, 2, 1)[0].tolist() == points
        assert find_peaks(cam03[0].cpu().numpy(), threshold, 2, 1).tolist() == points
    empty, empty_index = batched_find_peaks(torch.zeros(0, 8, 8, device=device))
    assert empty.shape == (0, 2) and empty_index.shape == (0,)
    with pytest.raises(ValueError, match='peak rule'):
        batched_find_peaks(cam, rule='best')
    with pytest.raises(ValueError, match=r'\(N, H, W\)'):
        batched_find_peaks(cam[0])


@pytest.mark.parametrize('device', _DEVICES)
def test_peak_prompts_equal_find_peaks_of_each_present_class(device):
    rng = np.random.default_rng(3)
    cams = np.stack([np.stack([_synthetic_map(rng, (48, 40), k) for k in range(c, c + 5)])
                     for c in range(3)])  # (3, 5, 48, 40)
    labels = torch.tensor([[1, 0, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 1, 1]]).float()
    for rule in ('snapped', 'official'):
        kwargs = dict(threshold=0.5, min_distance=5, filter_size=3, rule=rule)
        img, cls, peaks = peak_prompts(torch.from_numpy(cams).to(device), labels.to(device),
                                       **kwargs)
        expected = [(b, c, find_peaks(cams[b, c], **kwargs))
                    for b, c in torch.nonzero(labels > 0.5).tolist()]
        expected = [e for e in expected if len(e[2])]
        assert img == [e[0] for e in expected] and cls == [e[1] for e in expected]
        for p, e in zip(peaks, expected, strict=True):
            assert isinstance(p, np.ndarray) and p.dtype == np.int64
            np.testing.assert_array_equal(p, e[2])
    assert peak_prompts(torch.from_numpy(cams), torch.zeros(3, 5)) == ([], [], [])
