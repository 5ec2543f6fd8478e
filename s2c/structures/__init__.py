"""Typed records every layer shares: the crop geometry, SAM features, prompts, mask
predictions and the label spaces."""
from .geometry import Geometry
from .label_spaces import BACKGROUND, IGNORE_INDEX, cpm_to_labels, keys_to_labels, labels_to_cpm
from .masks import MaskPrediction
from .prompts import PromptBatch
from .sam_features import ImageFeatures, PreparedFeatures

__all__ = [
    'Geometry', 'BACKGROUND', 'IGNORE_INDEX', 'cpm_to_labels', 'keys_to_labels', 'labels_to_cpm',
    'MaskPrediction', 'PromptBatch', 'ImageFeatures', 'PreparedFeatures'
]
