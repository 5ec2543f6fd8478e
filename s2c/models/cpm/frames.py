"""CPM's two frames: the training crop and the SAM input frame of each image.

CPM finds its prompts on CAMs of the **crop frame** (the augmented crop the
classifier sees, ``(H, W)`` pixels, pixel ``(row i, col j)`` covering
``[j, j+1) x [i, i+1)``) and decodes them in the **SAM input frame** of the
image the embedding belongs to (the image resized so that its longest side is
``S = img_size``, ``(h_in, w_in)`` pixels, padded bottom-right to ``S x S``;
the decoder's low-res logits are an ``S/4`` square over that padded frame,
the embedding an ``S/16`` grid). SAM's prompt encoder adds 0.5 to a point, so
a point at pixel index ``u`` means the pixel centre ``u + 0.5``.

Cached source (:class:`CachedFrames`): the embedding is the **original**
image's. A crop pixel centre ``(j + 0.5, i + 0.5)`` goes to the original frame
through the crop's :class:`~s2c.structures.Geometry` (``x_orig = ax * x + bx``),
then to the input frame by ``x_in = x_orig * w_in / W0`` (``y`` alike), and is
passed as ``x_in - 0.5``. Logits come back with one ``grid_sample`` per prompt:
each crop pixel centre is mapped to the original frame, where the low-res map
spans ``[0, S * W0 / w_in) x [0, S * H0 / h_in)`` (the padded square in
original pixels); crop padding samples the border and is marked ignore later.

Online source (:class:`OnlineFrames`, official ``model_s2c.py``): the crop
itself is resized to ``S x S`` (non-uniformly) and encoded, so a crop pixel
index ``(row, col)`` is the point ``(col * S / W, row * S / H)`` (official: the
integer peak indices scaled, no centre shift) and the low-res logits are
resized bilinearly to ``(H, W)``.

Both also map the crop's CAMs onto the embedding grid (PerSAM-style reference
maps, :attr:`~s2c.structures.ImageFeatures.references`), and offer SAM's own
output chain for the masks (:meth:`CachedFrames.masks_to_crop`, official
``model_s2c.py`` 281: ``Sam.postprocess_masks`` to the image the embedding
belongs to, then ``> 0``) next to thresholding the logits resampled into the
crop.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from s2c.sam.transforms import postprocess_logits
from s2c.structures import Geometry, ImageFeatures
from s2c.utils.normalization import denormalize_images


class CachedFrames:
    """Crop <-> SAM input frame of cached embeddings of the original images.

    Args:
        geometries: ``B`` crop geometry records (crop -> original frame).
        features: The batch's :class:`~s2c.structures.ImageFeatures` from the cache
            (``input_sizes``, ``original_sizes``, ``img_size``).
        crop_size: ``(H, W)`` of the crops.
        names: ``B`` image ids, for messages.

    Raises:
        ValueError: When an embedding was computed on an image of another size
            than the dataset's (names the image and the fix).
    """

    def __init__(self, geometries: Sequence[Geometry], features: ImageFeatures,
                 crop_size: tuple[int, int], names: Sequence[str]) -> None:
        self.geometries = list(geometries)
        self.input_sizes = features.input_sizes.tolist()
        self.original_sizes = features.original_sizes.tolist()
        self.img_size = int(features.img_size)
        self.crop_size = tuple(crop_size)
        for name, geo, ori in zip(names, self.geometries, self.original_sizes):
            if tuple(ori) != tuple(geo.ori_shape):
                raise ValueError(
                    f'embedding of {name} was computed on a {ori[0]}x{ori[1]} image, the dataset '
                    f'image is {geo.ori_shape}; rebuild the cache '
                    '(tools/cache_sam_embeddings.py --overwrite)')

    def points(self, image_index: Sequence[int], peaks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Crop pixels ``(P, 2)`` (row, col) -> SAM input-frame points ``(P, 2)`` (x, y).

        Args:
            image_index: Image of each prompt.
            peaks: Integer ``(row, col)`` crop pixels of each prompt.

        Returns:
            list[np.ndarray]: float64 ``(x, y)`` per prompt (pixel index convention).
        """
        out = []
        for bi, p in zip(image_index, peaks):
            xy = self.geometries[bi].pixel_centres_to_original(p)  # continuous original (x, y)
            in_h, in_w = self.input_sizes[bi]
            ori_h, ori_w = self.original_sizes[bi]
            out.append(np.stack([xy[:, 0] * in_w / ori_w, xy[:, 1] * in_h / ori_h], 1) - 0.5)
        return out

    def logits_to_crop(self, logits: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """``(N, s, s)`` low-res logits of the SAM input frame -> ``(N, H, W)`` crop frame."""
        s = self.img_size
        grids = []
        for geo, (in_h, in_w), (ori_h, ori_w) in zip(self.geometries, self.input_sizes,
                                                     self.original_sizes):
            # the low-res map spans the padded S x S input square: in original pixels
            grids.append(geo.sampling_grid(s * ori_w / in_w, s * ori_h / in_h,
                                           device=logits.device))
        grid = torch.cat(grids)[image_index]
        return F.grid_sample(logits[:, None], grid, mode='bilinear', padding_mode='border',
                             align_corners=False)[:, 0]

    def masks_to_crop(self, logits: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """SAM's output chain: ``(N, s, s)`` low-res logits -> ``(N, H, W)`` bool crop masks.

        Each mask is made as SAM makes it for the original image
        (:func:`~s2c.sam.transforms.postprocess_logits`, then ``> 0``) and
        taken into the crop by nearest-neighbour sampling through the geometry
        record (crop padding: False).
        """
        s = self.img_size
        out = []
        for n, bi in enumerate(image_index.tolist()):
            in_h, in_w = self.input_sizes[bi]
            ori_h, ori_w = self.original_sizes[bi]
            mask = postprocess_logits(logits[n][None, None], (in_h, in_w), (ori_h, ori_w), s) > 0
            grid = self.geometries[bi].sampling_grid(device=logits.device)
            out.append(F.grid_sample(mask.float(), grid, mode='nearest', padding_mode='zeros',
                                     align_corners=False)[0, 0] > 0.5)
        if not out:
            return torch.zeros((0, *self.crop_size), dtype=torch.bool, device=logits.device)
        return torch.stack(out)

    def cams_to_grid(self, cams: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``(B, C, H, W)`` crop CAMs -> ``(B, C, h, w)`` maps over the embedding grid.

        Each grid cell centre of the padded SAM input frame is mapped to the
        original frame and into the crop; cells outside the crop (or outside the
        image) get 0.
        """
        gh, gw = (int(v) for v in grid_hw)
        s = self.img_size
        h, w = self.crop_size
        grids = []
        for geo, (in_h, in_w), (ori_h, ori_w) in zip(self.geometries, self.input_sizes,
                                                     self.original_sizes):
            x_orig = (torch.arange(gw, dtype=torch.float64) + 0.5) * (s / gw) * ori_w / in_w
            y_orig = (torch.arange(gh, dtype=torch.float64) + 0.5) * (s / gh) * ori_h / in_h
            xy = torch.stack(torch.broadcast_tensors(x_orig[None, :], y_orig[:, None]), -1)
            crop = geo.from_original(xy)
            outside = (xy[..., 0] >= ori_w) | (xy[..., 1] >= ori_h)
            gx = torch.where(outside, 2.0, crop[..., 0] / w * 2 - 1)
            gy = torch.where(outside, 2.0, crop[..., 1] / h * 2 - 1)
            grids.append(torch.stack([gx, gy], -1)[None].float())
        grid = torch.cat(grids).to(cams.device)
        return F.grid_sample(cams, grid, mode='bilinear', padding_mode='zeros',
                             align_corners=False)


class OnlineFrames:
    """Crop <-> SAM input frame when the crop itself is encoded (official online mode).

    Args:
        crop_size: ``(H, W)`` of the crops.
        img_size: ``S``, side of the SAM input frame.
    """

    def __init__(self, crop_size: tuple[int, int], img_size: int) -> None:
        self.crop_size = tuple(crop_size)
        self.img_size = int(img_size)

    def sam_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` ImageNet-normalised crops -> ``(B, 3, S, S)`` RGB in [0, 255].

        The official bytes (``model_s2c.py`` 223-224): de-normalise with the
        official arithmetic (:func:`~s2c.utils.normalization.denormalize_images`,
        times 255 included), resize to ``S x S`` (bilinear, ``align_corners=True``),
        then truncate to uint8 (values are clamped to [0, 255] first: the
        official cast of a value a rounding error outside that range gives the
        same byte).

        Returns:
            torch.Tensor: float32 tensor of integer values (uint8 range).
        """
        s = self.img_size
        rgb = F.interpolate(denormalize_images(inputs), size=(s, s), mode='bilinear',
                            align_corners=True)
        return rgb.clamp(0, 255).to(torch.uint8).float()

    def points(self, image_index: Sequence[int], peaks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Crop pixels ``(P, 2)`` (row, col) -> ``(P, 2)`` ``(x, y) = (col S / W, row S / H)``."""
        h, w = self.crop_size
        s = self.img_size
        return [np.stack([p[:, 1] * s / w, p[:, 0] * s / h], 1) for p in peaks]

    def logits_to_crop(self, logits: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """``(N, s, s)`` low-res logits -> ``(N, H, W)`` (bilinear resize of the whole square)."""
        return F.interpolate(logits[:, None], size=self.crop_size, mode='bilinear',
                             align_corners=False)[:, 0]

    def masks_to_crop(self, logits: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """SAM's output chain (official): upsample to ``S x S``, resize to the crop, ``> 0``."""
        s = self.img_size
        return postprocess_logits(logits[:, None], (s, s), self.crop_size, s)[:, 0] > 0

    def cams_to_grid(self, cams: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``(B, C, H, W)`` crop CAMs -> ``(B, C, h, w)`` (the crop fills the square)."""
        size = tuple(int(v) for v in grid_hw)
        return F.interpolate(cams, size=size, mode='bilinear', align_corners=False)
