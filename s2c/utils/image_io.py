"""Reading images: RGB arrays for every stage, sizes from the file header."""
from __future__ import annotations

import os.path as osp

import numpy as np
from PIL import Image

#: Suffixes tried when an image is missing, to suggest the right ``img_suffix``.
_OTHER_SUFFIXES = ('.jpg', '.JPG', '.jpeg', '.JPEG', '.png', '.PNG')


def suffix_hint(path: str) -> str:
    """A hint when the image exists with another suffix (``.JPG``, ``.png``), else ``''``.

    Args:
        path: The image path that was not found.

    Returns:
        str: ``' (but <stem><suffix> exists: set img_suffix=...)'`` or ``''``.
    """
    stem, _ = osp.splitext(path)
    folder = osp.dirname(path) or '.'
    base = osp.basename(stem)
    for suffix in _OTHER_SUFFIXES:
        if osp.isfile(osp.join(folder, base + suffix)):
            return (f' (but {base}{suffix} exists: set img_suffix={suffix!r} in the dataset '
                    'config, e.g. --cfg-options train_dataloader.dataset.img_suffix=' + suffix
                    + ')')
    return ''


def read_rgb_image(path: str) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (original frame).

    The one image reader of every stage (CAM training and inference, SAM caches, CRF and
    the other pseudo-label methods), with one rule per kind of file:

    - 8-bit grayscale, palette and CMYK files are converted to RGB;
    - images with transparency (RGBA, LA, PA, palette with a transparent colour) are
      composed over black;
    - 16-bit and 32-bit integer images (``I;16*``, ``I``: e.g. 16-bit grayscale PNG) are
      scaled from [0, 65535] to [0, 255] (``round(v / 257)``, values clipped), float
      images (``F``) are clipped to [0, 255], then replicated to three channels.

    Args:
        path: Image file.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB, values in [0, 255].

    Raises:
        FileNotFoundError: When ``path`` does not exist (with a suffix hint).
        ValueError: When the file is not a readable image (names the file).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file {path} not found{suffix_hint(path)}')
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith('I') or img.mode == 'F':
                arr = np.asarray(img, dtype=np.float64)
                if img.mode != 'F':
                    arr = arr / 257.0  # 16-bit range -> 8-bit
                gray = np.clip(np.round(arr), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            if img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (
                    img.mode == 'P' and 'transparency' in img.info):
                bg = Image.new('RGB', img.size, (0, 0, 0))
                rgba = img.convert('RGBA')
                bg.paste(rgba, mask=rgba.split()[3])
                rgb = bg
            else:
                rgb = img.convert('RGB')
            return np.asarray(rgb, dtype=np.uint8).copy()
    except Exception as e:
        raise ValueError(f'cannot read image {path} ({type(e).__name__}: {e}); the file is '
                         'corrupt or not an image: re-extract it or remove it from the '
                         'split list') from e


def image_size(path: str) -> tuple[int, int]:
    """``(H, W)`` of an image in pixels, from its header (no decoding).

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        OSError: When the header is not an image header (PIL's error).
    """
    with Image.open(path) as img:
        w, h = img.size
    return h, w
