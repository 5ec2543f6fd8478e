"""CAM classifiers."""
from .cam_classifier import CAMClassifier

__all__ = ['CAMClassifier']
