"""Registered data transforms (image, SE map and geometry move together)."""
from .augment import (
                      ColorJitter,
                      Normalize,
                      RandomCrop,
                      RandomGrayscale,
                      RandomHorizontalFlip,
                      RandomRescaleLongSide,
                      resize_nearest,
)
from .formatting import PackClsInputs, RenumberSegmentsBeforeCrop, renumber_segments
from .geometry import Geometry
from .loading import LoadImageFromFile, LoadSegMap, LoadSEMap, read_rgb_image

__all__ = [
    'ColorJitter', 'Normalize', 'RandomCrop', 'RandomGrayscale', 'RandomHorizontalFlip',
    'RandomRescaleLongSide', 'resize_nearest', 'PackClsInputs', 'RenumberSegmentsBeforeCrop',
    'renumber_segments', 'Geometry',
    'LoadImageFromFile', 'LoadSegMap', 'LoadSEMap', 'read_rgb_image'
]
