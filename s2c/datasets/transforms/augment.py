"""Training augmentations of S2C (``voc12/data.py`` ``VOC12ClsDataset_MyTF``).

Order in the official code: random long-side rescale -> horizontal flip ->
colour jitter -> random grayscale -> normalise -> random crop (zero padding).
Geometric transforms also move ``results['se_map']`` (nearest neighbour) and
``results['gt_seg']`` when present, and update ``results['geometry']``.
Randomness comes from NumPy's global generator (photometric transforms: torch's),
both seeded by MMEngine per worker.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as tvt

from s2c.registry import TRANSFORMS
from s2c.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, normalize_image

#: Per-pixel maps moved together with the image by geometric transforms.
PIXEL_MAP_KEYS = ('se_map', 'gt_seg')
#: Fill value of each per-pixel map in padded areas (0 = no segment, 255 = ignore).
PAD_VALUES = {'se_map': 0, 'gt_seg': 255}


#: Nearest-neighbour conventions of :func:`resize_nearest`.
NEAREST_CONVENTIONS = ('pixel_centre', 'pil')


def resize_nearest(arr: np.ndarray, height: int, width: int,
                   convention: str = 'pixel_centre') -> np.ndarray:
    """Nearest-neighbour resize of a label map (any dtype, any trailing dims).

    Conventions:

    - ``'pixel_centre'`` (default): output pixel ``i`` takes input pixel
      ``floor((i + 0.5) * H_in / H_out)``, the mapping the :class:`Geometry`
      record describes (OpenCV's ``INTER_NEAREST`` uses ``floor(i * H_in / H_out)``).
    - ``'pil'``: exactly PIL's ``Image.resize(..., NEAREST)`` (official
      ``tools/imutils.py`` resizes SE maps with it). PIL accumulates the same
      source coordinate as a running sum (``a / 2``, then ``+ a`` per pixel,
      ``a = H_in / H_out``), which lands just below some exact integers and is
      truncated (e.g. 2 -> 7 pixels, output 3: ``3.5 * 2 / 7 = 1``, PIL takes
      0); a few tenths of a percent of the pixels of a random resize differ.
      The indices are PIL's own (a 1-D index image resized by PIL; the
      mapping is separable).

    Args:
        arr: ``(H_in, W_in, ...)`` array of any dtype.
        height: Output height.
        width: Output width.
        convention: ``'pixel_centre'`` or ``'pil'``.

    Returns:
        np.ndarray: ``(height, width, ...)`` array of the same dtype.

    Raises:
        ValueError: For an unknown ``convention``.
    """
    if convention not in NEAREST_CONVENTIONS:
        raise ValueError(f'unknown nearest-neighbour convention {convention!r}; '
                         f'choose one of {NEAREST_CONVENTIONS}')
    h_in, w_in = arr.shape[:2]
    if convention == 'pil':
        rows, cols = _pil_nearest_indices(h_in, height), _pil_nearest_indices(w_in, width)
    else:
        rows = np.minimum(((np.arange(height) + 0.5) * h_in / height).astype(np.int64), h_in - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * w_in / width).astype(np.int64), w_in - 1)
    return arr[rows[:, None], cols[None, :]]


@lru_cache(maxsize=4096)
def _pil_nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each of ``size_out`` pixels under PIL's NEAREST resize (read-only)."""
    index = Image.fromarray(np.arange(size_in, dtype=np.int32)[None, :])
    out = np.asarray(index.resize((int(size_out), 1), Image.NEAREST))[0].astype(np.int64)
    out.flags.writeable = False
    return out


@TRANSFORMS.register_module()
class RandomRescaleLongSide:
    """Resize so that the long side is a random integer in ``[min_long, max_long]``.

    The short side is ``round(short * long_new / long)`` (official
    ``imutils.random_resize``). Image: bicubic (PIL); maps: nearest
    (:func:`resize_nearest`).

    Args:
        min_long: Smallest long side, pixels (S2C: 256).
        max_long: Largest long side, pixels, inclusive (S2C: 512).
        map_resize: Nearest-neighbour convention of the per-pixel maps:
            ``'pixel_centre'`` (default, consistent with the geometry record)
            or ``'pil'`` (official: PIL's NEAREST).

    Raises:
        ValueError: ``min_long > max_long`` or an unknown ``map_resize``.
    """

    def __init__(self, min_long: int = 256, max_long: int = 512,
                 map_resize: str = 'pixel_centre') -> None:
        if min_long > max_long:
            raise ValueError(f'min_long {min_long} > max_long {max_long}')
        if map_resize not in NEAREST_CONVENTIONS:
            raise ValueError(f'map_resize must be one of {NEAREST_CONVENTIONS}, '
                             f'got {map_resize!r}')
        self.min_long, self.max_long = int(min_long), int(max_long)
        self.map_resize = map_resize

    def __call__(self, results: dict) -> dict:
        target = int(np.random.randint(self.min_long, self.max_long + 1))
        h, w = results['img'].shape[:2]
        if w < h:
            new_h, new_w = target, int(round(w * target / h))
        else:
            new_h, new_w = int(round(h * target / w)), target
        img = Image.fromarray(results['img']).resize((new_w, new_h), Image.BICUBIC)
        results['img'] = np.asarray(img)
        for key in PIXEL_MAP_KEYS:
            if key in results:
                results[key] = resize_nearest(results[key], new_h, new_w, self.map_resize)
        results['img_shape'] = (new_h, new_w)
        results['geometry'] = results['geometry'].rescale(new_h, new_w)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(min_long={self.min_long}, max_long={self.max_long}, '
                f'map_resize={self.map_resize!r})')


@TRANSFORMS.register_module()
class RandomHorizontalFlip:
    """Mirror image and maps left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if np.random.rand() < self.prob:
            results['img'] = np.ascontiguousarray(results['img'][:, ::-1])
            for key in PIXEL_MAP_KEYS:
                if key in results:
                    results[key] = np.ascontiguousarray(results[key][:, ::-1])
            results['geometry'] = results['geometry'].hflip()
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class ColorJitter:
    """torchvision's ``ColorJitter`` with probability ``prob`` (S2C: 0.4/0.4/0.4/0.1, p=0.8).

    Works on the uint8 RGB image before normalisation.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, prob: float = 0.8) -> None:
        self.params = dict(brightness=brightness, contrast=contrast, saturation=saturation,
                           hue=hue)
        self.jitter = tvt.ColorJitter(**self.params)
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if torch.rand(1).item() < self.prob:
            img = self.jitter(Image.fromarray(results['img']))
            results['img'] = np.asarray(img)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.params}, prob={self.prob})'


@TRANSFORMS.register_module()
class RandomGrayscale:
    """Convert to 3-channel grayscale with probability ``prob`` (S2C: 0.02)."""

    def __init__(self, prob: float = 0.02) -> None:
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if torch.rand(1).item() < self.prob:
            gray = Image.fromarray(results['img']).convert('L').convert('RGB')
            results['img'] = np.asarray(gray)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob})'


@TRANSFORMS.register_module()
class Normalize:
    """``(img / 255 - mean) / std`` per channel -> ``(H, W, 3)`` float32 (ImageNet statistics)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(v) for v in std)

    def __call__(self, results: dict) -> dict:
        results['img'] = normalize_image(results['img'], self.mean, self.std)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(mean={list(self.mean)}, std={list(self.std)})'


@TRANSFORMS.register_module()
class RandomCrop:
    """Random ``crop_size`` crop; a side shorter than the crop is padded at a random offset.

    Follows the official ``imutils.random_crop``: along each axis, if the image
    is larger, a random window is taken; if smaller, the image is placed at a
    random offset in a zero container. Image padding = 0 (after normalisation:
    the mean colour); SE-map padding = 0 (no segment, ignored by SSC);
    ground-truth padding = 255. ``results['valid']`` ((H, W) bool) marks the
    non-padded pixels.

    Args:
        crop_size: Output side length, pixels (S2C: 256), or ``(h, w)``.
        pad_value: Image fill value.
    """

    def __init__(self, crop_size: int | Sequence[int] = 256, pad_value: float = 0.0) -> None:
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.pad_value = pad_value

    @staticmethod
    def _offset(size: int, crop: int) -> int:
        """Top/left of the window in the image frame (negative = padding before)."""
        space = size - crop
        if space >= 0:
            return int(np.random.randint(space + 1))
        return -int(np.random.randint(-space + 1))

    @staticmethod
    def _paste(arr: np.ndarray, top: int, left: int, ch: int, cw: int, fill) -> np.ndarray:
        h, w = arr.shape[:2]
        out = np.full((ch, cw) + arr.shape[2:], fill, dtype=arr.dtype)
        sy0, sx0 = max(top, 0), max(left, 0)
        sy1, sx1 = min(top + ch, h), min(left + cw, w)
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = arr[sy0:sy1, sx0:sx1]
        return out

    def __call__(self, results: dict) -> dict:
        ch, cw = self.crop_size
        h, w = results['img'].shape[:2]
        top, left = self._offset(h, ch), self._offset(w, cw)
        results['img'] = self._paste(results['img'], top, left, ch, cw, self.pad_value)
        for key in PIXEL_MAP_KEYS:
            if key in results:
                results[key] = self._paste(results[key], top, left, ch, cw, PAD_VALUES[key])
        valid = np.ones((h, w), dtype=bool) if 'valid' not in results else results['valid']
        results['valid'] = self._paste(valid, top, left, ch, cw, False)
        results['img_shape'] = (ch, cw)
        results['geometry'] = results['geometry'].crop(top, left, ch, cw)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(crop_size={self.crop_size})'
