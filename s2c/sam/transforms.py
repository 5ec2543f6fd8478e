"""SAM's image preprocessing and the inverse mapping of mask logits.

Frames used throughout ``s2c.sam``:

- *original*: the image as given, ``(H, W)`` pixels.
- *input*: the original resized so that its longest side is ``img_size``
  (1024 for the official models), ``input_size = (h, w)``; the encoder sees it
  padded at the bottom/right to ``img_size x img_size``.
- *low-res*: the decoder's ``img_size / 4`` square logits (256 x 256 for
  1024 px), covering the padded input.

Facts from segment-anything 1.0 (``utils/transforms.py`` ``ResizeLongestSide``,
``modeling/sam.py`` ``Sam.preprocess`` / ``Sam.postprocess_masks``): the new
size is ``int(side * scale + 0.5)`` with ``scale = img_size / max(H, W)``; the
image is resized with PIL bilinear; pixels are normalised with mean
(123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375) and then zero-padded;
logits are upsampled bilinearly (align_corners=False) to ``img_size``, cropped
to ``input_size`` and resized bilinearly to the original size.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def get_preprocess_shape(height: int, width: int, img_size: int) -> tuple[int, int]:
    """Size ``(h, w)`` of an image after resizing its longest side to ``img_size``.

    Rounds like segment-anything: ``int(side * scale + 0.5)``.
    """
    scale = img_size * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def check_rgb_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is a non-empty ``(H, W, 3)`` uint8 array."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, 'shape', None)
        raise ValueError(f'SAM expects an (H, W, 3) RGB image, got shape {shape}; convert '
                         'grayscale/RGBA images to RGB first.')
    if image.dtype != np.uint8:
        raise ValueError(f'SAM expects a uint8 image in [0, 255], got dtype {image.dtype}.')
    if min(image.shape[:2]) < 1:
        raise ValueError(f'empty image of shape {image.shape}')


def resize_longest_side(image: np.ndarray, img_size: int) -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 RGB image so its longest side is ``img_size``.

    PIL bilinear (with PIL's antialiasing), as segment-anything's
    ``ResizeLongestSide.apply_image`` does.

    Returns:
        np.ndarray: ``(h, w, 3)`` uint8, ``(h, w) = get_preprocess_shape(H, W, img_size)``.
    """
    check_rgb_image(image)
    h, w = get_preprocess_shape(image.shape[0], image.shape[1], img_size)
    pil = Image.fromarray(np.ascontiguousarray(image), mode='RGB')
    return np.array(pil.resize((w, h), resample=Image.BILINEAR))


def preprocess_image(image: np.ndarray, img_size: int,
                     device: str | torch.device | None = None,
                     pixel_mean: Sequence[float] = PIXEL_MEAN,
                     pixel_std: Sequence[float] = PIXEL_STD
                     ) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's preprocessing: resize longest side, normalise, pad bottom-right.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image (original frame).
        img_size: Encoder input size (``model.image_encoder.img_size``).
        device: Device of the returned tensor (default CPU).
        pixel_mean: Per-channel mean in [0, 255] units.
        pixel_std: Per-channel std in [0, 255] units.

    Returns:
        tuple: ``(x, input_size)`` with ``x`` the ``(1, 3, img_size, img_size)``
        float32 normalised and zero-padded input, and ``input_size = (h, w)``
        the size of the resized image inside it.

    Raises:
        ValueError: When ``image`` is not an ``(H, W, 3)`` uint8 array.
    """
    resized = resize_longest_side(image, img_size)
    h, w = resized.shape[:2]
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
    mean = torch.tensor(list(pixel_mean), dtype=torch.float32, device=x.device).view(-1, 1, 1)
    std = torch.tensor(list(pixel_std), dtype=torch.float32, device=x.device).view(-1, 1, 1)
    x = (x.float() - mean) / std
    x = F.pad(x, (0, img_size - w, 0, img_size - h))
    return x, (h, w)


def original_to_input_coords(points: np.ndarray | torch.Tensor, original_size: Sequence[int],
                             img_size: int) -> np.ndarray | torch.Tensor:
    """Map ``(..., 2)`` xy points from the original frame to the input frame.

    ``x' = x * w / W``, ``y' = y * h / H`` with ``(h, w)`` the resized size.
    NumPy input is computed in float64 (as segment-anything's
    ``apply_coords``); torch input keeps its floating dtype (float32 for
    integer input).

    Args:
        points: ``(..., 2)`` xy coordinates in original pixels.
        original_size: ``(H, W)`` of the original image.
        img_size: Encoder input size.

    Returns:
        Same type and shape as ``points``: xy in input-frame pixels.
    """
    old_h, old_w = int(original_size[0]), int(original_size[1])
    new_h, new_w = get_preprocess_shape(old_h, old_w, img_size)
    if isinstance(points, torch.Tensor):
        out = points.clone() if points.is_floating_point() else points.float()
    else:
        out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (new_w / old_w)
    out[..., 1] = out[..., 1] * (new_h / old_h)
    return out


def postprocess_logits(low_res: torch.Tensor, input_size: Sequence[int],
                       original_size: Sequence[int], img_size: int) -> torch.Tensor:
    """Map decoder logits from the low-res frame back to the original frame.

    Upsample bilinearly to ``img_size x img_size``, cut the padding to
    ``input_size``, resize bilinearly to ``original_size``
    (align_corners=False), exactly as ``Sam.postprocess_masks``.

    Args:
        low_res: ``(N, C, h_l, w_l)`` logits (e.g. ``(N, 3, 256, 256)``).
        input_size: ``(h, w)`` of the resized image inside the padded input.
        original_size: ``(H, W)`` of the original image.
        img_size: Encoder input size.

    Returns:
        torch.Tensor: ``(N, C, H, W)`` logits (same dtype as ``low_res``).
    """
    x = F.interpolate(low_res, (img_size, img_size), mode='bilinear', align_corners=False)
    x = x[..., :int(input_size[0]), :int(input_size[1])]
    return F.interpolate(x, (int(original_size[0]), int(original_size[1])), mode='bilinear',
                         align_corners=False)
