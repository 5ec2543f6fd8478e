"""Datasets and transforms."""
from . import transforms  # noqa: F401  (registers the transforms)
from .class_names import VOC_CLASSES
from .collate import sample_list_collate
from .voc12 import VOC12ClsDataset, load_cls_labels, read_split

__all__ = ['VOC_CLASSES', 'sample_list_collate', 'VOC12ClsDataset', 'load_cls_labels', 'read_split']
