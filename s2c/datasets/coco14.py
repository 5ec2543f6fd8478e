"""MS-COCO 2014 image-level classification data: VOC's dataset class with COCO's classes."""
from __future__ import annotations

from s2c.registry import DATASETS

from .class_names import COCO_CLASSES
from .voc12 import VOC12ClsDataset


@DATASETS.register_module()
class COCO14ClsDataset(VOC12ClsDataset):
    """COCO 2014 with image-level labels: :class:`VOC12ClsDataset` (same loading, transforms,
    geometry and SE-map handling) with the 80 COCO classes and COCO's layout as defaults.

    Layout under ``data_root`` (written by ``tools/dataset_converters/coco14.py``)::

        train2014/<name>.jpg  val2014/<name>.jpg
        SegmentationClass/{train2014,val2014}/<name>.png   (evaluation)
        ImageSets/Segmentation/{train,val}.txt             (82,081 / 40,137 images)
        cls_labels.npy                                     (name -> (80,) multi-hot)

    Args:
        ann_file: Split list (default ``ImageSets/Segmentation/train.txt``).
        img_dir: Image folder (default ``train2014``; ``val2014`` for val).
        **kwargs: :class:`VOC12ClsDataset` arguments.
    """

    METAINFO = dict(classes=COCO_CLASSES)

    def __init__(self, ann_file: str = 'ImageSets/Segmentation/train.txt',
                 img_dir: str = 'train2014', **kwargs) -> None:
        super().__init__(ann_file=ann_file, img_dir=img_dir, **kwargs)
