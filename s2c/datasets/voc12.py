"""PASCAL VOC 2012 image-level classification data (the CAM training data)."""
from __future__ import annotations

import logging
import os.path as osp
from collections.abc import Mapping, Sequence

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from s2c.registry import DATASETS, TRANSFORMS
from s2c.utils.image_io import suffix_hint

from .class_names import VOC_CLASSES
from .cls_labels import load_cls_labels
from .split import read_split


@DATASETS.register_module()
class VOC12ClsDataset(BaseDataset):
    """PASCAL VOC 2012 with image-level labels (S2C/PSA data layout).

    Layout under ``data_root`` (``VOCdevkit/VOC2012``)::

        JPEGImages/<name>.jpg
        SegmentationClass/<name>.png          (only for evaluation)
        ImageSets/Segmentation/<split>.txt     (train_aug 10,582 / train 1,464 / val 1,449)
        cls_labels.npy                         (tools/dataset_converters/voc12.py)

    Each item (before the pipeline) holds ``img_path``, ``name``, ``gt_label``
    (``(C,)`` float32 multi-hot over the foreground classes) and, when
    configured, ``se_map_path`` / ``seg_map_path``; the pipeline adds the image,
    its original size and the geometry record.

    Listed images without any foreground label are left out (one warning with
    the count and the first names). Missing image files are an error listing
    them.

    Args:
        data_root: Dataset root (``.../VOCdevkit/VOC2012``).
        ann_file: Split list, relative to ``data_root``.
        cls_labels: PSA-style label file, relative to ``data_root``.
        img_dir: Image folder, relative to ``data_root``.
        img_suffix: Image file suffix.
        seg_dir: Ground-truth folder (relative) for evaluation, or ``None``.
        se_map_dir: Folder of cached SE maps (``<name>.png``), or ``None``.
        classes: Foreground class names (default: the 20 VOC classes).
        split_dirs: Split name -> ``dict(img_dir=..., seg_dir=...)`` for the tools that take
            ``--split`` (:func:`~s2c.datasets.dataset_paths`); not used by the dataset.
        pipeline: Transform configs.
        **kwargs: Passed to :class:`mmengine.dataset.BaseDataset`.
    """

    METAINFO = dict(classes=VOC_CLASSES)

    def __init__(self, data_root: str, ann_file: str = 'ImageSets/Segmentation/train_aug.txt',
                 cls_labels: str = 'cls_labels.npy', img_dir: str = 'JPEGImages',
                 img_suffix: str = '.jpg', seg_dir: str | None = None,
                 se_map_dir: str | None = None, classes: Sequence[str] | None = None,
                 split_dirs: Mapping[str, Mapping[str, str]] | None = None,
                 pipeline: Sequence = (), **kwargs) -> None:
        self.split_dirs = dict(split_dirs or {})
        self.cls_labels_file = cls_labels
        self.img_dir = img_dir
        self.img_suffix = img_suffix
        self.seg_dir = seg_dir
        self.se_map_dir = se_map_dir
        metainfo = kwargs.pop('metainfo', None) or {}
        if classes is not None:
            metainfo = dict(metainfo, classes=tuple(classes))
        # Build transforms from our registry, so the dataset works without a default scope.
        pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(ann_file=ann_file, data_root=data_root, metainfo=metainfo,
                         pipeline=pipeline, **kwargs)

    def _abs(self, path: str | None) -> str | None:
        if path is None or osp.isabs(path):
            return path
        return osp.join(self.data_root, path)

    def load_data_list(self) -> list[dict]:
        """Read the split, the image-level labels and check that every image exists."""
        names = read_split(self.ann_file)
        labels_path = self._abs(self.cls_labels_file)
        labels = load_cls_labels(labels_path)
        num_classes = len(self.metainfo['classes'])
        img_dir, seg_dir, se_dir = (self._abs(self.img_dir), self._abs(self.seg_dir),
                                    self._abs(self.se_map_dir))
        unlabelled = [n for n in names if n not in labels]
        if unlabelled:
            raise KeyError(f'{len(unlabelled)} images of {self.ann_file} have no entry in '
                           f'{labels_path} (first: {unlabelled[:5]}); regenerate it with '
                           'tools/dataset_converters/voc12.py')
        data_list, no_fg, missing = [], [], []
        for name in names:
            label = labels[name]
            if label.shape[0] != num_classes:
                raise ValueError(f'{labels_path}: label of {name} has {label.shape[0]} classes, '
                                 f'the dataset has {num_classes}')
            if label.sum() == 0:
                no_fg.append(name)
                continue
            img_path = osp.join(img_dir, name + self.img_suffix)
            if not osp.isfile(img_path):
                missing.append(img_path)
            item = dict(name=name, img_path=img_path, gt_label=label)
            if seg_dir is not None:
                item['seg_map_path'] = osp.join(seg_dir, name + '.png')
            if se_dir is not None:
                item['se_map_path'] = osp.join(se_dir, name + '.png')
            data_list.append(item)
        if missing:
            raise FileNotFoundError(f'{len(missing)} images listed in {self.ann_file} are '
                                    f'missing (first: {missing[:5]}); check data_root / img_dir'
                                    f'{suffix_hint(missing[0])}')
        if no_fg:
            print_log(f'{len(no_fg)} images of {osp.basename(self.ann_file)} have no foreground '
                      f'label and are left out (first: {no_fg[:5]})', logger='current',
                      level=logging.WARNING)
        return data_list
