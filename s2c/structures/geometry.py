"""The geometry record: where each pixel of an augmented crop came from.

Every geometric transform (rescale, flip, crop/pad) updates a :class:`Geometry`
stored in ``results['geometry']``. It is an axis-aligned affine map from the
**current frame** (the crop fed to the network) to the **original frame**
(the image as stored on disk), in continuous pixel coordinates: pixel
``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is
``(x, y) = (j + 0.5, i + 0.5)``::

    x_orig = ax * x_crop + bx
    y_orig = ay * y_crop + by

``ax < 0`` means the crop is horizontally flipped; ``1 / |ax|`` is the
horizontal scale (crop pixels per original pixel); ``(bx, by)`` is where the
crop's top-left corner lands in the original frame (for a flipped crop, its
top-right corner). Crop pixels whose centre maps outside the original image
are padding (:meth:`Geometry.valid_mask`).

CPM uses the record to map CAM peaks from the crop into the SAM input frame of
the cached embedding of the original image, and to resample SAM logits from
that frame back into the crop (:meth:`Geometry.sampling_grid`); see
:mod:`s2c.models.cpm.frames`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Geometry:
    """Affine map from the current (crop) frame to the original frame.

    Attributes:
        ori_shape: ``(H0, W0)`` of the original image, in pixels.
        shape: ``(H, W)`` of the current frame, in pixels.
        ax, bx, ay, by: ``x_orig = ax * x + bx`` and ``y_orig = ay * y + by``
            (continuous coordinates, pixel centres at ``+0.5``).
    """

    ori_shape: tuple[int, int]
    shape: tuple[int, int]
    ax: float = 1.0
    bx: float = 0.0
    ay: float = 1.0
    by: float = 0.0

    @classmethod
    def identity(cls, height: int, width: int) -> Geometry:
        """The record of an untransformed ``(height, width)`` image."""
        return cls(ori_shape=(int(height), int(width)), shape=(int(height), int(width)))

    # ----------------------------------------------------------------- updates
    def rescale(self, new_height: int, new_width: int) -> Geometry:
        """Record a resize of the current frame to ``(new_height, new_width)``.

        ``x_new = x * new_width / W``, so ``x = x_new * W / new_width``.
        """
        sx = self.shape[1] / new_width
        sy = self.shape[0] / new_height
        return Geometry(self.ori_shape, (int(new_height), int(new_width)),
                        self.ax * sx, self.bx, self.ay * sy, self.by)

    def hflip(self) -> Geometry:
        """Record a horizontal flip of the current frame: ``x_new = W - x``."""
        width = self.shape[1]
        return Geometry(self.ori_shape, self.shape, -self.ax, self.ax * width + self.bx,
                        self.ay, self.by)

    def crop(self, top: int, left: int, height: int, width: int) -> Geometry:
        """Record a crop whose top-left corner is ``(top, left)`` in the current frame.

        Negative offsets or a window larger than the frame mean padding.
        ``x_new = x - left``.
        """
        return Geometry(self.ori_shape, (int(height), int(width)), self.ax,
                        self.ax * left + self.bx, self.ay, self.ay * top + self.by)

    # ------------------------------------------------------------- read-outs
    @property
    def flipped(self) -> bool:
        """Whether the current frame is mirrored horizontally w.r.t. the original."""
        return self.ax < 0

    @property
    def scale(self) -> tuple[float, float]:
        """``(sy, sx)``: current-frame pixels per original pixel."""
        return 1.0 / abs(self.ay), 1.0 / abs(self.ax)

    def to_original(self, xy: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map continuous ``(..., 2)`` ``(x, y)`` points of the current frame to the original."""
        out = xy.clone() if isinstance(xy, torch.Tensor) else np.array(xy, dtype=np.float64)
        out[..., 0] = xy[..., 0] * self.ax + self.bx
        out[..., 1] = xy[..., 1] * self.ay + self.by
        return out

    def from_original(self, xy: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map continuous ``(..., 2)`` ``(x, y)`` original points into the current frame."""
        out = xy.clone() if isinstance(xy, torch.Tensor) else np.array(xy, dtype=np.float64)
        out[..., 0] = (xy[..., 0] - self.bx) / self.ax
        out[..., 1] = (xy[..., 1] - self.by) / self.ay
        return out

    def pixel_centres_to_original(self, rows_cols: np.ndarray) -> np.ndarray:
        """Map integer ``(N, 2)`` ``(row, col)`` pixels of the current frame to original ``(x, y)``.

        Returns:
            np.ndarray: ``(N, 2)`` float64 ``(x, y)`` continuous original coordinates.
        """
        rc = np.asarray(rows_cols, dtype=np.float64).reshape(-1, 2)
        return self.to_original(np.stack([rc[:, 1] + 0.5, rc[:, 0] + 0.5], axis=1))

    def valid_mask(self) -> np.ndarray:
        """``(H, W)`` bool: True where the pixel centre lies inside the original image."""
        h, w = self.shape
        x = (np.arange(w) + 0.5) * self.ax + self.bx
        y = (np.arange(h) + 0.5) * self.ay + self.by
        vx = (x >= 0) & (x < self.ori_shape[1])
        vy = (y >= 0) & (y < self.ori_shape[0])
        return vy[:, None] & vx[None, :]

    def sampling_grid(self, src_width: float | None = None, src_height: float | None = None,
                      device: torch.device | str = 'cpu') -> torch.Tensor:
        """Grid for ``F.grid_sample`` that pulls a map of the original frame into this frame.

        The source map covers ``[0, src_width) x [0, src_height)`` in original
        pixels (default: the whole original image); its own resolution does not
        matter (use ``align_corners=False``). A map of the SAM input frame that
        also holds padding (e.g. 256x256 low-res logits of a 1024 input in which
        the image occupies ``1024 * W0 / max(H0, W0)`` columns) is sampled with
        ``src_width = W0 * 1024 / (W0 * s)`` etc., i.e. the original-pixel extent
        of the whole source map.

        Args:
            src_width: Width of the source map's extent in original pixels.
            src_height: Height of the source map's extent in original pixels.
            device: Device of the returned grid.

        Returns:
            torch.Tensor: ``(1, H, W, 2)`` float32 grid of normalised ``(x, y)`` in
            ``[-1, 1]`` (outside = padding; sample with ``padding_mode='zeros'``
            and use :meth:`valid_mask` to mark it ignore).
        """
        src_width = float(self.ori_shape[1] if src_width is None else src_width)
        src_height = float(self.ori_shape[0] if src_height is None else src_height)
        h, w = self.shape
        x = (torch.arange(w, dtype=torch.float64) + 0.5) * self.ax + self.bx
        y = (torch.arange(h, dtype=torch.float64) + 0.5) * self.ay + self.by
        gx = (x / src_width * 2 - 1).view(1, w).expand(h, w)
        gy = (y / src_height * 2 - 1).view(h, 1).expand(h, w)
        return torch.stack([gx, gy], dim=-1).unsqueeze(0).float().to(device)
