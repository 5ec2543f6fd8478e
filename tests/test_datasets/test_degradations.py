"""Synthetic degradations: deterministic per seed and image, shape/dtype kept, monotone."""
import numpy as np
import pytest

from s2c.datasets.degradations import DEGRADATIONS, LEVELS, degrade, parse_degradations


def _image() -> np.ndarray:
    """A natural-looking test image: random texture at several scales, and edges."""
    import cv2
    rng = np.random.default_rng(0)
    img = np.zeros((96, 128, 3))
    for sigma, weight in ((8, 60.0), (3, 40.0), (1, 25.0)):
        img += weight * cv2.GaussianBlur(rng.standard_normal((96, 128, 3)), (0, 0), sigma) * sigma
    img += 128
    img[30:60, 40:90] = (220, 40, 60)
    return img.clip(0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.parametrize('name', sorted(DEGRADATIONS))
def test_each_degradation_is_deterministic_and_monotone(name):
    img = _image()
    outs = [degrade(img, name, lv, seed=0, key='a') for lv in LEVELS]
    for out in outs:
        assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(outs[2], degrade(img, name, 3, seed=0, key='a'))
    psnr = [_psnr(img, out) for out in outs]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr   # stronger = further away
    assert psnr[0] < 60                                       # level 1 already changes it


def test_random_parts_follow_seed_and_image_key():
    img = _image()
    a = degrade(img, 'gaussian_noise', 2, seed=0, key='x')
    assert not np.array_equal(a, degrade(img, 'gaussian_noise', 2, seed=1, key='x'))
    assert not np.array_equal(a, degrade(img, 'gaussian_noise', 2, seed=0, key='y'))
    assert np.array_equal(degrade(img, 'haze', 2, seed=0), degrade(img, 'haze', 2, seed=9))


def test_parse_and_errors():
    assert parse_degradations(['jpeg:2', 'haze']) == [('jpeg', 2)] + [('haze', k) for k in LEVELS]
    with pytest.raises(ValueError, match='unknown degradation'):
        parse_degradations(['fog'])
    with pytest.raises(ValueError, match='level'):
        parse_degradations(['jpeg:6'])
    with pytest.raises(ValueError, match='uint8'):
        degrade(_image().astype(np.float32), 'jpeg', 1)
