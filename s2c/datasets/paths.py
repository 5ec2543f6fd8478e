"""Where a dataset's files are: the one resolver every tool and job uses.

A dataset config (``train_dataloader.dataset`` of an s2c config, possibly
inside wrappers such as ``RepeatDataset``) gives ``data_root`` and, relative
to it unless absolute: ``ann_file`` (the image list), ``img_dir`` (mmseg-style
``data_prefix.img_path`` works too; default ``JPEGImages``), ``img_suffix``
(default ``.jpg``), ``seg_dir`` (ground truth, default ``SegmentationClass``),
``split_dirs`` (per split name, ``img_dir`` / ``seg_dir`` overrides: COCO keeps train and
val images in ``train2014/`` and ``val2014/``),
``se_map_dir`` (the SE-map cache) and ``cls_labels`` (default ``cls_labels.npy``).
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .split import read_split


@dataclass(frozen=True)
class DatasetPaths:
    """Resolved paths of a dataset (all joined with ``data_root`` unless absolute).

    Attributes:
        data_root: Dataset root (e.g. ``data/VOCdevkit/VOC2012``).
        split_file: Image list (read with :func:`~s2c.datasets.read_split`).
        img_dir: Image folder.
        img_suffix: Image file suffix (``.jpg``).
        seg_dir: Ground-truth folder (may not exist, e.g. COCO test).
        se_map_dir: SE-map cache folder, or ``None`` when the config has none.
        cls_labels_file: Image-level label file (may not exist).
    """

    data_root: str
    split_file: str | None
    img_dir: str
    img_suffix: str = '.jpg'
    seg_dir: str | None = None
    se_map_dir: str | None = None
    cls_labels_file: str | None = None

    @property
    def cls_labels(self) -> str | None:
        """``cls_labels_file`` when that file exists, else ``None``."""
        f = self.cls_labels_file
        return f if f is not None and osp.isfile(f) else None

    def image_path(self, name: str) -> str:
        """``<img_dir>/<name><img_suffix>``."""
        return osp.join(self.img_dir, name + self.img_suffix)

    def names(self) -> list[str]:
        """Image ids of the list.

        Raises:
            FileNotFoundError: Naming a missing list.
            ValueError: When there is no list (see ``require_list`` of :func:`dataset_paths`).
        """
        if self.split_file is None:
            raise ValueError('no image list: the dataset config has no ann_file; pass --split')
        return read_split(self.split_file)


def unwrap_dataset_cfg(dataset_cfg: Any) -> Mapping:
    """The innermost dataset config holding ``data_root`` (wrappers are unwrapped)."""
    ds = dataset_cfg
    while isinstance(ds, Mapping) and 'data_root' not in ds and 'dataset' in ds:
        ds = ds['dataset']
    return ds if isinstance(ds, Mapping) else {}


def split_file(data_root: str, split: str) -> str:
    """A list file (a path ending in ``.txt`` or holding a separator) as is, else the
    split name ``<data_root>/ImageSets/Segmentation/<split>.txt``.

    Raises:
        FileNotFoundError: When ``split`` is a path that does not exist.
    """
    if split.endswith('.txt') or os.sep in split:
        if not osp.isfile(split):
            raise FileNotFoundError(f'split list {split} not found (pass an existing list file '
                                    'or a split name such as train or val)')
        return split
    return osp.join(data_root, 'ImageSets', 'Segmentation', split + '.txt')


def dataset_paths(dataset_cfg: Any, *, split: str | None = None, data_root: str | None = None,
                  img_dir: str | None = None, require_list: bool = True) -> DatasetPaths:
    """Resolve the paths of a dataset config (see the module docstring).

    Args:
        dataset_cfg: The dataset config (dict-like), e.g. ``cfg.train_dataloader.dataset``.
        split: ``None`` (the config's ``ann_file``), an existing list file, or a
            split name ``NAME`` meaning ``<data_root>/ImageSets/Segmentation/NAME.txt``.
        data_root: Overrides the config's ``data_root``.
        img_dir: Overrides the image folder (absolute or relative to the cwd).
        require_list: When False, a config without ``ann_file`` (and no ``split``)
            gives ``split_file=None`` instead of an error (the caller has names).

    Returns:
        DatasetPaths: The resolved paths.

    Raises:
        ValueError: When no data root or image list can be determined.
        FileNotFoundError: ``split`` looks like a file path but does not exist.
    """
    ds = unwrap_dataset_cfg(dataset_cfg)
    root = data_root or ds.get('data_root')
    if not root:
        raise ValueError("no data root: the config's train_dataloader.dataset has no "
                         'data_root; pass --data-root')
    root = str(root)

    def under_root(p: str | None) -> str | None:
        return None if p is None else p if osp.isabs(p) else osp.join(root, p)

    if split is not None:
        lst = split_file(root, split)
    elif ds.get('ann_file'):
        lst = under_root(ds['ann_file'])
    elif require_list:
        raise ValueError('no image list: the dataset config has no ann_file; pass --split')
    else:
        lst = None
    prefix = ds.get('data_prefix') or {}
    per_split = (ds.get('split_dirs') or {}).get(split) or {} if split is not None else {}
    images = img_dir or under_root(per_split.get('img_dir') or ds.get('img_dir')
                                   or prefix.get('img_path') or 'JPEGImages')
    seg = (per_split.get('seg_dir') or ds.get('seg_dir') or prefix.get('seg_map_path')
           or 'SegmentationClass')
    return DatasetPaths(
        data_root=root, split_file=lst, img_dir=images, img_suffix=ds.get('img_suffix') or '.jpg',
        seg_dir=under_root(seg),
        se_map_dir=under_root(ds.get('se_map_dir')),
        cls_labels_file=under_root(ds.get('cls_labels') or 'cls_labels.npy'))
