"""Registered prompt back-ends (``PROMPT_BACKENDS``), their interface and the
mask-selection policies."""
from .base import REQUIREMENTS, PromptBackend
from .hq_sam import HQSamPromptBackend
from .persam import PerSamPromptBackend
from .persam_f import PerSamFPromptBackend
from .robust_sam import RobustSamClearPromptBackend, RobustSamPromptBackend
from .sam import SamPromptBackend
from .selection import (
    HQ_OUTPUT_NAMES,
    ROBUST_OUTPUT_NAMES,
    SAM_OUTPUT_NAMES,
    SELECTION_POLICIES,
    check_policy,
    select_masks,
)

__all__ = [
    'REQUIREMENTS', 'PromptBackend', 'SamPromptBackend', 'HQSamPromptBackend',
    'RobustSamPromptBackend', 'RobustSamClearPromptBackend', 'PerSamPromptBackend',
    'PerSamFPromptBackend', 'SAM_OUTPUT_NAMES', 'HQ_OUTPUT_NAMES', 'ROBUST_OUTPUT_NAMES',
    'SELECTION_POLICIES', 'check_policy', 'select_masks'
]
