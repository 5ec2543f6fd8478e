"""Class names of the supported datasets (foreground only, in label order)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from s2c.registry import DATASETS

#: The 20 PASCAL VOC foreground classes; label index = position + 1 (0 is background).
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')

#: The 80 COCO object classes in the order of their category ids (1..90 with gaps); label
#: index = position + 1 (0 is background), as ``tools/dataset_converters/coco14.py`` writes.
COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')


def dataset_class_names(dataset_cfg: Any) -> tuple[str, ...]:
    """Foreground class names of a dataset config: its ``classes`` (or
    ``metainfo.classes``), else the ``METAINFO`` of its registered type (wrappers such as
    ``RepeatDataset`` are unwrapped); VOC's when neither says.

    Args:
        dataset_cfg: e.g. ``cfg.train_dataloader.dataset``.

    Returns:
        tuple: Class names; label index = position + 1.
    """
    ds = dataset_cfg
    while isinstance(ds, Mapping) and 'type' in ds and 'dataset' in ds and 'classes' not in ds:
        ds = ds['dataset']
    if not isinstance(ds, Mapping):
        return VOC_CLASSES
    if ds.get('classes'):
        return tuple(ds['classes'])
    if (ds.get('metainfo') or {}).get('classes'):
        return tuple(ds['metainfo']['classes'])
    dataset_type = ds.get('type')
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls is not None else None
    return tuple(classes) if classes else VOC_CLASSES
