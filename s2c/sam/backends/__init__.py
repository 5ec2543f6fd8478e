"""Registered prompt back-ends (``PROMPT_BACKENDS``) and their common interface."""
from .base import (
                   SAM_OUTPUT_NAMES,
                   SELECTION_POLICIES,
                   ImageFeatures,
                   MaskPrediction,
                   PromptBackend,
                   PromptBatch,
                   select_masks,
)
from .batched_decoder import decode_batched
from .sam import SamPromptBackend

__all__ = [
    'SAM_OUTPUT_NAMES', 'SELECTION_POLICIES', 'ImageFeatures', 'MaskPrediction', 'PromptBackend',
    'PromptBatch', 'select_masks', 'decode_batched', 'SamPromptBackend'
]
