"""CAM classifiers."""
from .cam_classifier import CAMClassifier, normalize_cams

__all__ = ['CAMClassifier', 'normalize_cams']
