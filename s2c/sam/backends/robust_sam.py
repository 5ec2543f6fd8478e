"""The RobustSAM prompt back-ends (robustsam/RobustSAM): the robust path and its ``clear`` path."""
from __future__ import annotations

import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.structures import ImageFeatures, PreparedFeatures

from ..decoders import BN_MODES, decode_batched_robust, robust_features
from .sam import SamPromptBackend
from .selection import ROBUST_OUTPUT_NAMES


@PROMPT_BACKENDS.register_module(name='robust_sam')
class RobustSamPromptBackend(SamPromptBackend):
    """RobustSAM: SAM's prompt encoder and RobustSAM's robust decoding path.

    One output, ``robust``: the mask of RobustSAM's robust path, as the authors'
    ``Sam.predict`` / ``eval.py`` compute it (``clear=False``,
    ``multimask_output=False``; see :mod:`s2c.sam.decoders.robust`). Its IoU
    head was never trained for the robust tokens, so no IoU is reported (NaN)
    and ``best_iou`` is refused.

    Requires the output of the first global-attention ViT block (``'early'``).
    RobustSAM's checkpoint holds its own image encoder: the embedding cache must
    have been made with it (checked through ``encoder_id`` when CPM is built).

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official RobustSAM checkpoint (strict; a ``module.`` prefix is
            accepted) or ``None`` (random weights).
        bn_mode: ``'per_sample'`` (default, what the authors' inference computes:
            BatchNorm on each image's / prompt's own statistics) or ``'running'``
            (running statistics, the authors' validation loop).
        chunk_size: Prompts per pass of the mask-feature block (memory bound).
        **kwargs: See :class:`~s2c.sam.backends.SamPromptBackend`.

    Raises:
        ValueError: Unknown ``bn_mode`` (and see the parent class).
    """

    sam_variant = 'robust_sam'
    default_selection = 'robust'

    def __init__(self, model_type: str = 'vit_h', checkpoint: str | None = None, *,
                 bn_mode: str = 'per_sample', chunk_size: int = 8, **kwargs) -> None:
        if bn_mode not in BN_MODES:
            raise ValueError(f'bn_mode must be one of {BN_MODES}, got {bn_mode!r}')
        super().__init__(model_type, checkpoint, **kwargs)
        self.bn_mode = bn_mode
        self.chunk_size = max(1, int(chunk_size))
        self.output_names = ROBUST_OUTPUT_NAMES
        self.requires = frozenset({'early'})

    def per_image(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """``robust_features`` ``(B, 32, 4h, 4w)`` (needs ``features.early``)."""
        return dict(robust_features=robust_features(self.mask_decoder, features.embeddings,
                                                    features.early, self.bn_mode))

    def decode_group(self, prepared: PreparedFeatures, image_pe: torch.Tensor,
                     sparse: torch.Tensor, dense: torch.Tensor, image_index: torch.Tensor,
                     extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``robust`` output; no IoU."""
        logits = decode_batched_robust(
            self.mask_decoder, prepared.features.embeddings,
            prepared.per_image['robust_features'], image_pe, sparse, dense, image_index,
            bn_mode=self.bn_mode, chunk_size=self.chunk_size)
        return logits, logits.new_zeros(logits.shape[0], 0)


@PROMPT_BACKENDS.register_module(name='robust_sam_clear')
class RobustSamClearPromptBackend(SamPromptBackend):
    """RobustSAM's ``clear=True`` path: plain SAM decoding with RobustSAM's decoder weights.

    The authors' ``SamPredictor`` (and so their automatic mask generator) takes
    this path (``clear`` left at its default ``True``); the anti-degradation
    blocks are not used.
    Outputs SAM's four channels with their IoUs (``index2`` works as with SAM).

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official RobustSAM checkpoint (strict) or ``None``.
        **kwargs: See :class:`~s2c.sam.backends.SamPromptBackend`.
    """

    sam_variant = 'robust_sam'
