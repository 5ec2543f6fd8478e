"""MS-COCO 2014 semantic segmentation (81 classes) for the mmseg segmentation stage."""
from __future__ import annotations

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS as SEG_DATASETS

from s2c.utils.label_io import VOC_PALETTE

from .class_names import COCO_CLASSES


@SEG_DATASETS.register_module()
class COCO14SegDataset(BaseSegDataset):
    """COCO 2014 as written by ``tools/dataset_converters/coco14.py``: ``<name>.jpg`` images,
    ``<name>.png`` label maps (0 background, 1..80 in category-id order, 255 ignore) and
    ``ImageSets/Segmentation/{train,val}.txt`` lists. Registered in mmseg's ``DATASETS``.

    The palette is the VOC colour map's first 81 entries (the PNGs use the same map).

    Args:
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments (``data_root``,
            ``ann_file``, ``data_prefix=dict(img_path='train2014', seg_map_path=...)``...).
    """

    METAINFO = dict(classes=('background', *COCO_CLASSES),
                    palette=[list(map(int, c)) for c in VOC_PALETTE[:81]])

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=False, **kwargs)
