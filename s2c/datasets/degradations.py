"""Synthetic image degradations of the kind RobustSAM was trained on, at levels 1..5.

Each degradation maps an ``(H, W, 3)`` uint8 RGB image to another of the same
shape and dtype; level 1 is mild, 5 severe. Randomness (noise, rain) comes
from a generator seeded by ``(seed, image key, name, level)``, so the same
seed and key always give the same image, and different images get different
noise.

=================  =========================================================
``gaussian_blur``  Gaussian blur, sigma 1, 2, 3, 4.5, 6 px
``motion_blur``    horizontal line kernel of 5, 9, 15, 21, 29 px
``gaussian_noise`` additive Gaussian noise, sigma 8, 16, 28, 42, 60 grey levels
``low_light``      gamma 1.5 .. 3.5 darkening, then noise sigma 2 .. 10
``jpeg``           JPEG compression, quality 50, 30, 18, 10, 5 (OpenCV)
``haze``           ``I t + A (1 - t)``, transmission 0.8 .. 0.3, airlight 230
``rain``           bright slanted streaks, 0.2 % .. 1.2 % of the pixels as seeds
=================  =========================================================
"""
from __future__ import annotations

import zlib
from collections.abc import Callable

import cv2
import numpy as np

LEVELS = (1, 2, 3, 4, 5)


def _blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (1.0, 2.0, 3.0, 4.5, 6.0)[level - 1]
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def _motion(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    length = (5, 9, 15, 21, 29)[level - 1]
    kernel = np.full((1, length), 1.0 / length, np.float32)
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (8.0, 16.0, 28.0, 42.0, 60.0)[level - 1]
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)


def _low_light(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    gamma = (1.5, 2.0, 2.5, 3.0, 3.5)[level - 1]
    sigma = (2.0, 4.0, 6.0, 8.0, 10.0)[level - 1]
    dark = 255.0 * (img / 255.0) ** gamma
    return np.clip(dark + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    quality = (50, 30, 18, 10, 5)[level - 1]
    ok, buf = cv2.imencode('.jpg', img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('OpenCV could not JPEG-encode the image')
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _haze(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    t = (0.8, 0.65, 0.5, 0.4, 0.3)[level - 1]
    return np.clip(img * t + 230.0 * (1 - t), 0, 255).astype(np.uint8)


def _rain(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    density = (0.002, 0.004, 0.006, 0.009, 0.012)[level - 1]
    h, w = img.shape[:2]
    seeds = (rng.random((h, w)) < density).astype(np.float32)
    length = max(5, int(round(min(h, w) * 0.06)))
    kernel = np.zeros((length, length), np.float32)
    np.fill_diagonal(np.fliplr(kernel), 1.0)   # slanted streaks
    streaks = np.clip(cv2.filter2D(seeds, -1, kernel), 0, 1)[..., None]
    return np.clip(img * (1 - 0.7 * streaks) + 235.0 * 0.7 * streaks, 0, 255).astype(np.uint8)


#: Degradation name -> ``(image, level, rng) -> image``.
DEGRADATIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    'gaussian_blur': _blur, 'motion_blur': _motion, 'gaussian_noise': _noise,
    'low_light': _low_light, 'jpeg': _jpeg, 'haze': _haze, 'rain': _rain,
}


def degrade(image: np.ndarray, name: str, level: int, seed: int = 0, key: str = '') -> np.ndarray:
    """Degrade one image, deterministically.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        name: A key of :data:`DEGRADATIONS`.
        level: 1 (mild) .. 5 (severe).
        seed: Seed of the random parts.
        key: Per-image key (e.g. the image id) mixed into the seed.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: Unknown name, a level outside 1..5, or not an RGB uint8 image.
    """
    check_degradation(name, level)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'degrade expects an (H, W, 3) uint8 image, got {image.dtype} '
                         f'{image.shape}')
    rng = np.random.default_rng([int(seed), zlib.crc32(f'{key}|{name}|{level}'.encode())])
    return DEGRADATIONS[name](image, int(level), rng)


def check_degradation(name: str, level: int) -> None:
    """Raise ``ValueError`` unless ``name`` is known and ``level`` in 1..5."""
    if name not in DEGRADATIONS:
        raise ValueError(f'unknown degradation {name!r}; choose one of {sorted(DEGRADATIONS)}')
    if int(level) not in LEVELS:
        raise ValueError(f'degradation level must be one of {LEVELS}, got {level!r}')


def parse_degradations(specs: list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
    """``['gaussian_blur:3', 'haze']`` -> ``[('gaussian_blur', 3), ('haze', 1), ..., ('haze', 5)]``.

    Raises:
        ValueError: For an unknown name or level (names the choices).
    """
    out = []
    for spec in specs:
        name, _, level = str(spec).partition(':')
        levels = [int(level)] if level else list(LEVELS)
        for lv in levels:
            check_degradation(name, lv)
            if (name, lv) not in out:
                out.append((name, lv))
    return out
