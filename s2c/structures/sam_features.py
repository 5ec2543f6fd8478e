"""Per-image SAM features of a batch: what the encoder, the embedding cache and a
prompt back-end's ``prepare`` produce.

Frames (see :mod:`s2c.sam.transforms`): the *SAM input frame* of an image is
the image resized so that its longest side is ``img_size`` (1024 for the
official models, 256 for ``tiny``), ``input_size = (h_in, w_in)`` pixels,
padded bottom-right to ``img_size x img_size``. The image embedding is a grid
of ``img_size / 16`` cells over that padded square.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class ImageFeatures:
    """SAM image features of ``B`` images (one container for every source).

    Attributes:
        embeddings: ``(B, 256, h, w)`` image embeddings (``h = w = img_size / 16``:
            64 for the official models).
        input_sizes: ``(B, 2)`` long ``(h_in, w_in)``: each image's size in the SAM
            input frame, before padding.
        original_sizes: ``(B, 2)`` long ``(H, W)``: size of the image the embedding
            was computed from (the original image when cached, the crop when
            encoded online).
        early: ``(B, h, w, C)`` output of the first global-attention ViT block
            (channels last, as the ViT emits it; HQ-SAM / RobustSAM), or ``None``.
        references: ``(B, K, h, w)`` reference maps in [0, 1] over the embedding
            grid (PerSAM's target region; CPM fills the CAM of each class,
            ``K = C``), or ``None``.
        img_size: Side of the SAM input frame in pixels.
    """

    embeddings: torch.Tensor
    input_sizes: torch.Tensor
    original_sizes: torch.Tensor
    early: torch.Tensor | None = None
    references: torch.Tensor | None = None
    img_size: int = 1024

    def __post_init__(self) -> None:
        b = self.embeddings.shape[0]
        if self.embeddings.ndim != 4:
            raise ValueError(f'embeddings must be (B, C, h, w), got {tuple(self.embeddings.shape)}')
        for name in ('input_sizes', 'original_sizes'):
            value = getattr(self, name)
            if tuple(value.shape) != (b, 2):
                raise ValueError(f'{name} must be ({b}, 2), got {tuple(value.shape)}')
        for name in ('early', 'references'):
            value = getattr(self, name)
            if value is not None and (value.ndim != 4 or value.shape[0] != b):
                raise ValueError(f'{name} must be 4-D with {b} images, got {tuple(value.shape)}')

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the embeddings."""
        return self.embeddings.device

    def to(self, device: torch.device | str) -> ImageFeatures:
        """A copy with every tensor on ``device`` (float tensors as float32)."""
        def move(t: torch.Tensor | None, dtype: torch.dtype | None = None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(self, embeddings=move(self.embeddings, torch.float32),
                       input_sizes=move(self.input_sizes), original_sizes=move(self.original_sizes),
                       early=move(self.early, torch.float32),
                       references=move(self.references, torch.float32))


@dataclass
class PreparedFeatures:
    """What a prompt back-end's ``prepare`` returns: the features plus per-image state.

    Attributes:
        features: The batch's :class:`ImageFeatures`.
        per_image: Prompt-independent tensors computed once per batch, leading
            dim ``B`` (e.g. HQ-SAM's fused ``(B, 32, 256, 256)`` features);
            ``decode`` gathers them by each prompt's ``image_index``.
    """

    features: ImageFeatures
    per_image: dict[str, torch.Tensor] = field(default_factory=dict)
