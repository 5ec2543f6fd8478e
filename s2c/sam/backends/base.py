"""The prompt back-end interface shared by CPM (training) and SAM refinement (pseudo-labels).

A back-end turns prompts into mask logits for a batch of images whose SAM
features are already computed (cached embeddings, or encoded online). It
works in two steps:

1. ``prepare(features) -> PreparedFeatures``: per-image, prompt-independent work,
   done once per batch (HQ-SAM's fused features, RobustSAM's anti-degradation
   features, PerSAM's target maps);
2. ``decode(prepared, prompts) -> MaskPrediction``: every (image, class) prompt
   of the batch in one call; each prompt is paired with its image by
   ``prompts.image_index`` (segment-anything's decoder pairs ONE image with all
   prompts).

What a back-end declares, fixed at construction and checked when CPM or a
pseudo-label job is built (before iteration 1, before the first image):

- ``output_names``: the channels of its :class:`~s2c.structures.MaskPrediction`
  (a selection policy must be servable from them);
- ``requires``: per-image inputs beyond the embedding, a subset of
  ``{'early', 'reference'}`` (the first global-attention ViT block's output;
  reference maps of the prompted class): an embedding cache must hold what
  ``'early'`` needs, CPM fills ``references`` when asked;
- ``encoder_id``: :func:`s2c.sam.build.encoder_id` of its checkpoint, which an
  embedding cache must match;
- ``img_size`` (side of the SAM input frame) and ``device``.

Frames: points, boxes and logits live in the **SAM input frame** of each image
(the original resized so that its longest side is ``img_size``, padded
bottom-right to ``img_size x img_size``); low-resolution logits
(``img_size / 4`` square) cover that whole padded square. Back-ends run
without gradients, with frozen parameters, on their own ``device``.
"""
from __future__ import annotations

import torch
from torch import nn

from s2c.structures import ImageFeatures, MaskPrediction, PreparedFeatures, PromptBatch

#: What a back-end may require besides the image embedding.
REQUIREMENTS = frozenset({'early', 'reference'})


class PromptBackend(nn.Module):
    """Base class of registered prompt back-ends (``PROMPT_BACKENDS``).

    Subclasses set :attr:`output_names`, :attr:`requires`, :attr:`img_size`
    and :attr:`encoder_id` in ``__init__`` and implement :meth:`decode`
    (and :meth:`prepare` when they have per-image work).

    Attributes:
        output_names: Channel names of the predictions.
        requires: Subset of :data:`REQUIREMENTS`.
        img_size: Side of the SAM input frame in pixels (1024, ``tiny`` 256).
        encoder_id: Identity of the image encoder the back-end's checkpoint holds.
    """

    output_names: tuple[str, ...] = ()
    #: The selection policy to use when none is asked for (the back-end's own usual output).
    default_selection: str = 'index2'
    requires: frozenset[str] = frozenset()
    img_size: int = 1024
    encoder_id: str = ''

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer('_device_anchor', torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """Device the back-end runs on (moves with ``.to(device)``)."""
        return self._device_anchor.device

    def check_requirements(self) -> None:
        """Raise ``ValueError`` when ``requires`` names something unknown."""
        unknown = set(self.requires) - REQUIREMENTS
        if unknown:
            raise ValueError(f'{type(self).__name__}.requires has unknown entries '
                             f'{sorted(unknown)}; allowed: {sorted(REQUIREMENTS)}')

    def check_features(self, features: ImageFeatures) -> None:
        """Raise ``ValueError`` when ``features`` lack what :attr:`requires` names."""
        for need, value in (('early', features.early), ('reference', features.references)):
            if need in self.requires and value is None:
                raise ValueError(
                    f'{type(self).__name__} requires {need!r} features but none were given'
                    + ('; build the embedding cache with sam_embeddings.early_features=True'
                       if need == 'early' else ''))

    @torch.no_grad()
    def prepare(self, features: ImageFeatures) -> PreparedFeatures:
        """Per-image, prompt-independent work, once per batch.

        Args:
            features: ``B`` images' features.

        Returns:
            PreparedFeatures: The features (float32 on :attr:`device`) and the
            per-image tensors of :meth:`per_image` (``decode`` gathers them by
            ``image_index``).

        Raises:
            ValueError: When the features lack what :attr:`requires` names.
        """
        self.check_features(features)
        feats = features.to(self.device)
        return PreparedFeatures(feats, self.per_image(feats))

    def per_image(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """Back-end specific per-image tensors (leading dim ``B``); default none."""
        return {}

    def decode(self, prepared: PreparedFeatures, prompts: PromptBatch) -> MaskPrediction:
        """Decode every prompt of a batch in one call.

        Args:
            prepared: Output of :meth:`prepare` for the batch's ``B`` images.
            prompts: ``N`` prompts; ``prompts.image_index`` indexes the ``B`` images.

        Returns:
            MaskPrediction: ``(N, M, s, s)`` logits, ``(N, M)`` IoUs, :attr:`output_names`.
        """
        raise NotImplementedError

    def forward(self, features: ImageFeatures, prompts: PromptBatch) -> MaskPrediction:
        """``decode(prepare(features), prompts)``."""
        return self.decode(self.prepare(features), prompts)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """Online source: encode ``(B, 3, img_size, img_size)`` RGB images in [0, 255].

        Raises:
            NotImplementedError: For back-ends built without an image encoder.
        """
        raise NotImplementedError(f'{type(self).__name__} has no image encoder; build it with '
                                  'with_image_encoder=True for the online embedding source')
