"""Image-level labels: PSA's ``cls_labels.npy`` (a pickled dict ``name -> (C,) multi-hot``)."""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping

import numpy as np

from s2c.utils.fileio import atomic_write


def load_cls_labels(source: str | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Image-level labels as ``name -> (C,) float32`` multi-hot over the foreground classes.

    Args:
        source: Path of a PSA-style ``cls_labels.npy`` (written by
            ``tools/dataset_converters/voc12.py``), or a mapping already in memory.

    Returns:
        dict: ``name -> (C,)`` float32 vectors.

    Raises:
        FileNotFoundError: When the file is missing (says how to make it).
        ValueError: When the file is not such a dict.
    """
    if isinstance(source, Mapping):
        return {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in source.items()}
    if not osp.isfile(source):
        raise FileNotFoundError(
            f'image-level labels {source} not found; write them with '
            'python tools/dataset_converters/voc12.py DATA_ROOT')
    try:
        labels = np.load(source, allow_pickle=True).item()
    except Exception as e:
        raise ValueError(f'{source} is not a PSA-style cls_labels.npy (pickled dict name -> '
                         f'multi-hot vector): {e}') from e
    if not isinstance(labels, dict):
        raise ValueError(f'{source} holds a {type(labels).__name__}, expected a dict')
    return {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in labels.items()}


def save_cls_labels(path: str, labels: Mapping[str, np.ndarray]) -> None:
    """Write ``name -> (C,) float32`` labels as a PSA-style ``cls_labels.npy``, atomically.

    Args:
        path: Output file (its folder is created).
        labels: Image id -> multi-hot vector over the foreground classes.
    """
    data = {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in labels.items()}
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        np.save(f, data, allow_pickle=True)
