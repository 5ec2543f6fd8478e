"""Peak finder on synthetic CAMs: global max kept, border, min distance, threshold."""
import numpy as np
import pytest
import torch

from s2c.cam.peaks import find_peaks
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
