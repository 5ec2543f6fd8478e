"""Datasets: image-level classification data, image lists and labels, path resolution,
converters, the synthetic demo data and the transforms."""
from . import transforms  # noqa: F401  (registers the transforms)
from .class_names import COCO_CLASSES, VOC_CLASSES, dataset_class_names
from .cls_labels import load_cls_labels, save_cls_labels
from .coco14 import COCO14ClsDataset
from .collate import sample_list_collate
from .paths import DatasetPaths, dataset_paths, unwrap_dataset_cfg
from .split import read_split
from .voc12 import VOC12ClsDataset

__all__ = [
    'COCO_CLASSES', 'VOC_CLASSES', 'dataset_class_names', 'load_cls_labels', 'save_cls_labels',
    'sample_list_collate', 'DatasetPaths', 'dataset_paths', 'unwrap_dataset_cfg', 'read_split',
    'COCO14ClsDataset', 'VOC12ClsDataset'
]
