"""Pseudo-labels from a config, behind ``tools/make_pseudo_labels.py``.

The config says where the images and the image list are
(``train_dataloader.dataset``), where the SE maps are (its ``se_map_dir``,
for ``se_merge``) and how CPM prompts SAM (``model.cpm``, for ``sam``).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

from s2c.caches.layout import se_map_dir
from s2c.datasets import dataset_class_names, dataset_paths
from s2c.pseudo_labels import make_pseudo_labels
from s2c.utils.job_summary import JobSummary


def sam_method_params(cfg: Config, *, backend: str | None = None, selection: str | None = None,
                      confidence: str | None = None, embedding_dir: str | None = None,
                      device: str = 'auto') -> dict[str, Any]:
    """Parameters of the ``sam`` method: the config's ``model.cpm`` with overrides.

    Args:
        cfg: An S2C config (with ``model.cpm``).
        backend: Prompt back-end type overriding ``model.cpm.backend.type``.
        selection: Mask selection policy overriding ``model.cpm.selection``.
        confidence: Confidence rule overriding ``model.cpm.confidence``.
        embedding_dir: Embedding cache overriding ``model.cpm.embedding_dir``.
        device: Where SAM's decoder runs.

    Raises:
        ValueError: When the config has no ``model.cpm`` block.
    """
    if not (cfg.get('model') or {}).get('cpm'):
        raise ValueError(f'{cfg.filename} has no model.cpm block: use an S2C config '
                         '(e.g. configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py) for '
                         '--method sam')
    cpm = cfg.model.cpm.to_dict()
    if backend:
        cpm['backend']['type'] = backend
    for key, value in (('selection', selection), ('confidence', confidence),
                       ('embedding_dir', embedding_dir)):
        if value:
            cpm[key] = value
    return dict(cpm=cpm, device=device)


def pseudo_labels_from_config(cfg: Config, cams: str, out: str, method: str, *,
                              split: str | None = None, img_dir: str | None = None,
                              se_dir: str | None = None,
                              cls_labels: str | Mapping | None = None,
                              num_classes: int | None = None,
                              ignore_below: float | None = None, workers: int | None = None,
                              overwrite: bool = False, progress: bool = True,
                              **method_params: Any) -> JobSummary:
    """:func:`~s2c.pseudo_labels.make_pseudo_labels` with the dataset paths of a config.

    Args:
        cfg: Config (``train_dataloader.dataset``: data_root, ann_file, img_dir,
            img_suffix, se_map_dir, cls_labels).
        cams: CAM folder (``tools/test.py``).
        out: Output folder.
        method: Registered method name.
        split: Split name or list file (default: the dataset's ``ann_file``).
        img_dir: Overrides the image folder.
        se_dir: SE-map folder (default: the config's ``se_map_dir``; ``se_merge``).
        cls_labels: Image-level labels (default: the dataset's ``cls_labels.npy``
            when it exists).
        num_classes: Foreground classes (default: those of the config's dataset, e.g. 20 for
            VOC, 80 for COCO).
        ignore_below: Mark pixels whose score is below this as 255.
        workers: Processes (default: 4 on CPU; 1 for ``sam``, whose decoder runs
            once per process).
        overwrite: Rewrite existing outputs.
        progress: Show a progress bar.
        **method_params: The method's parameters.

    Raises:
        ValueError: A required input is missing (names the flag to pass).
    """
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    paths = dataset_paths(dataset, split=split, img_dir=img_dir)
    if num_classes is None:
        num_classes = len(dataset_class_names(dataset))
    if workers is None:
        workers = 1 if method == 'sam' else min(4, os.cpu_count() or 1)
    if method == 'se_merge' and se_dir is None:
        se_dir = se_map_dir(cfg) if cfg.get('train_dataloader') else None
        if se_dir is None:
            raise ValueError('method se_merge needs SE maps: pass --se-dir, or use a config '
                             'whose train_dataloader.dataset has se_map_dir')
    return make_pseudo_labels(
        cams, out, paths.names(), method, img_dir=paths.img_dir, img_suffix=paths.img_suffix,
        se_dir=se_dir, num_classes=num_classes, ignore_below=ignore_below, workers=workers,
        overwrite=overwrite, cls_labels=cls_labels or paths.cls_labels, progress=progress,
        **method_params)
