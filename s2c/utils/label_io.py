"""Label maps as palette PNGs (the VOC convention DeepLab training reads)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .fileio import atomic_write


def _voc_palette(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map, ``(n, 3)`` uint8 (bit-interleaved ids)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


#: ``(256, 3)`` uint8 VOC palette: 0 black background, 1 (128, 0, 0) aeroplane, ...,
#: 255 (224, 224, 192) ignore.
VOC_PALETTE = _voc_palette()


def save_label_png(path: str, label: np.ndarray) -> None:
    """Write a label map as a mode-``P`` PNG with the VOC palette, atomically.

    Args:
        path: Destination ``.png``.
        label: ``(H, W)`` integer map with values in ``[0, 255]``
            (0 background, 1..C classes, 255 ignore).

    Raises:
        ValueError: When ``label`` is not 2-D or holds values outside ``[0, 255]``.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'label map for {path} must be (H, W), got shape {label.shape}')
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f'label map for {path} has values outside [0, 255]: '
                         f'[{label.min()}, {label.max()}]')
    img = Image.fromarray(label.astype(np.uint8), mode='P')
    img.putpalette(VOC_PALETTE.flatten().tolist())
    with atomic_write(path) as tmp:
        img.save(tmp, format='PNG')


def load_label_png(path: str, palette: np.ndarray = VOC_PALETTE) -> np.ndarray:
    """Read a label PNG as an ``(H, W)`` uint8 class-index map.

    Palette (``P``) and grayscale (``L``) PNGs hold indices directly. RGB PNGs
    (e.g. ground truth exported as colours) are mapped back through ``palette``.

    Args:
        path: PNG file.
        palette: ``(N, 3)`` colours; colour ``palette[i]`` means class ``i``.

    Returns:
        np.ndarray: ``(H, W)`` uint8 label map.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not a readable image, has an unsupported
            mode, or (RGB) holds colours that are not in the palette.
    """
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises several types for corrupt files
        raise ValueError(f'cannot read label image {path}: {e}') from e
    if img.mode in ('P', 'L'):
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ('RGB', 'RGBA'):
        rgb = np.asarray(img.convert('RGB'), dtype=np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pal = palette.astype(np.int64)
        pal_code = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        lut_keys, lut_idx = np.unique(pal_code, return_index=True)
        pos = np.searchsorted(lut_keys, code).clip(0, len(lut_keys) - 1)
        ok = lut_keys[pos] == code
        if not ok.all():
            bad = np.unique(rgb[~ok].reshape(-1, 3), axis=0)[:5].tolist()
            raise ValueError(
                f'{path} is an RGB label image with {int((~ok).sum())} pixels whose colour is '
                f'not in the VOC palette (e.g. {bad}); save labels as palette (P) or '
                'grayscale PNGs of class indices.')
        return lut_idx[pos].astype(np.uint8)
    raise ValueError(f'{path}: unsupported label PNG mode {img.mode!r}; expected P, L or RGB')
