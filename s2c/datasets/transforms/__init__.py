"""Registered data transforms (image, SE map and geometry record move together)."""
from .augment import (
    ColorJitter,
    Normalize,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomRescaleLongSide,
    resize_nearest,
)
from .formatting import PackClsInputs, RenumberSegmentsBeforeCrop
from .loading import LoadAnnotations, LoadImageFromFile, LoadSEMap

__all__ = [
    'ColorJitter', 'Normalize', 'RandomCrop', 'RandomGrayscale', 'RandomHorizontalFlip',
    'RandomRescaleLongSide', 'resize_nearest', 'PackClsInputs', 'RenumberSegmentsBeforeCrop',
    'LoadAnnotations', 'LoadImageFromFile', 'LoadSEMap'
]
