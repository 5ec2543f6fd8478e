"""The HQ-SAM prompt back-end (SysCV/sam-hq: SAM plus a high-quality output token)."""
from __future__ import annotations

import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.structures import ImageFeatures, PreparedFeatures

from ..decoders import decode_batched_hq, hq_features
from .sam import SamPromptBackend
from .selection import HQ_OUTPUT_NAMES


@PROMPT_BACKENDS.register_module(name='hq_sam')
class HQSamPromptBackend(SamPromptBackend):
    """HQ-SAM: SAM's prompt encoder and HQ-SAM's decoder (+ image encoder online).

    Outputs ``single, multi_0, multi_1, multi_2, hq``: SAM's four mask tokens as
    HQ-SAM computes them (the HQ token takes part in the two-way transformer,
    so they are not vanilla SAM's) with their predicted IoUs, and the HQ mask
    (no predicted IoU: NaN). HQ-SAM's own predictor returns the best-IoU
    multimask logit plus the HQ logit (selection policy ``'hq_official'``), or
    the HQ logit alone (``'hq'``, its ``hq_token_only=True``); see
    :data:`~s2c.sam.backends.SELECTION_POLICIES`.

    Requires the output of the first global-attention ViT block (``'early'``):
    build the embedding cache with ``sam_embeddings.early_features=True``, or
    encode online. ``prepare`` fuses it with the embedding into HQ-SAM's
    ``(B, 32, 256, 256)`` per-image features (official
    ``mask_decoder_hq.py`` 102-103), once per batch.

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official HQ-SAM checkpoint (e.g. ``sam_hq_vit_h.pth``; strict
            loading: a vanilla SAM file is refused, naming the missing HQ keys)
            or ``None`` (random weights: tests and the CPU demo only).
        **kwargs: See :class:`~s2c.sam.backends.SamPromptBackend`.
    """

    sam_variant = 'hq_sam'
    default_selection = 'hq_official'

    def __init__(self, model_type: str = 'vit_h', checkpoint: str | None = None,
                 **kwargs) -> None:
        super().__init__(model_type, checkpoint, **kwargs)
        self.output_names = HQ_OUTPUT_NAMES
        self.requires = frozenset({'early'})

    def per_image(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """``hq_features`` ``(B, 32, 4h, 4w)`` (needs ``features.early``)."""
        return dict(hq_features=hq_features(self.mask_decoder, features.embeddings,
                                            features.early))

    def decode_group(self, prepared: PreparedFeatures, image_pe: torch.Tensor,
                     sparse: torch.Tensor, dense: torch.Tensor, image_index: torch.Tensor,
                     extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """HQ-SAM's five outputs (:func:`~s2c.sam.decoders.decode_batched_hq`)."""
        return decode_batched_hq(self.mask_decoder, prepared.features.embeddings,
                                 prepared.per_image['hq_features'], image_pe, sparse, dense,
                                 image_index)
