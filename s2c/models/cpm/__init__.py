"""The CAM-based prompting module: orchestration, frames, prompts and label composition."""
from .cpm import CPM, build_backend
from .frames import CachedFrames, OnlineFrames
from .labels import CONFIDENCE_MODES, compose_cpm_labels
from .prompts import peak_prompts, points_to_prompts

__all__ = [
    'CPM', 'build_backend', 'CachedFrames', 'OnlineFrames', 'CONFIDENCE_MODES',
    'compose_cpm_labels', 'peak_prompts', 'points_to_prompts'
]
