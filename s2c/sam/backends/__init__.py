"""Registered prompt back-ends (``PROMPT_BACKENDS``), their interface and the
mask-selection policies."""
from .base import REQUIREMENTS, PromptBackend
from .sam import SamPromptBackend
from .selection import SAM_OUTPUT_NAMES, SELECTION_POLICIES, check_policy, select_masks

__all__ = [
    'REQUIREMENTS', 'PromptBackend', 'SamPromptBackend', 'SAM_OUTPUT_NAMES',
    'SELECTION_POLICIES', 'check_policy', 'select_masks'
]
