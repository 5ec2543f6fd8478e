"""SE maps on disk: one uint16 PNG per image (0 = no segment, 1..K segments).

An SE ("segment everything") map is an ``(H, W)`` integer map at the original
image resolution. The official S2C code stores int64 ``.npy`` files and casts
them to uint8 when loading (ids above 255 wrap); a 16-bit PNG holds up to
65,535 segments exactly and is 36x to 1,500x smaller.
"""
from __future__ import annotations

import os.path as osp
import shutil

import cv2
import numpy as np

from .fileio import atomic_write, no_space_error

#: Largest segment id of a uint16 SE map (65,535).
MAX_SEGMENTS = int(np.iinfo(np.uint16).max)


def save_se_map(path: str, se_map: np.ndarray) -> None:
    """Write an SE map as a 16-bit grayscale PNG, atomically (temp file + rename).

    Args:
        path: Destination ``.png``.
        se_map: ``(H, W)`` integer map with values in ``[0, 65535]``.

    Raises:
        ValueError: Not 2-D, not integer, or values outside ``[0, 65535]``.
        OSError: When the PNG cannot be written.
    """
    se_map = np.asarray(se_map)
    if se_map.ndim != 2 or not np.issubdtype(se_map.dtype, np.integer):
        raise ValueError(f'SE map for {path} must be a 2-D integer array, got '
                         f'{se_map.dtype} {se_map.shape}')
    if se_map.size and (se_map.min() < 0 or se_map.max() > MAX_SEGMENTS):
        raise ValueError(f'SE map for {path} has ids outside [0, {MAX_SEGMENTS}]: '
                         f'[{se_map.min()}, {se_map.max()}]')
    data = se_map.astype(np.uint16)
    with atomic_write(path) as tmp:
        # Checked before the rename: a full disk can leave a short file behind a "successful"
        # write; only a map that decodes to the same ids gets the final name.
        written = cv2.imwrite(tmp, data)
        back = cv2.imread(tmp, cv2.IMREAD_UNCHANGED) if written else None
        if back is None or back.shape != data.shape or not np.array_equal(back, data):
            directory = osp.dirname(osp.abspath(path))
            if shutil.disk_usage(directory).free < 2 * data.nbytes + 2 ** 20:
                raise no_space_error(directory, path)
            raise OSError(f'could not write SE map {path}: the PNG written does not decode to '
                          'the map (OpenCV imwrite failed)')


def load_se_map(path: str) -> np.ndarray:
    """Read an SE map PNG written by :func:`save_se_map`.

    Args:
        path: The ``.png`` file.

    Returns:
        np.ndarray: ``(H, W)`` uint16 (0 = no segment), original frame.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When it is not a readable single-channel 8/16-bit PNG
            (the message names the file; delete it and re-run the SE map job).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'SE map {path} does not exist; run tools/cache_se_maps.py')
    se_map = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if se_map is None:
        raise ValueError(f'cannot read SE map {path} (corrupt or not an image); delete it and '
                         're-run tools/cache_se_maps.py')
    if se_map.ndim != 2 or se_map.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'SE map {path} must be a single-channel 8/16-bit PNG, got '
                         f'{se_map.dtype} {se_map.shape}; delete it and re-run '
                         'tools/cache_se_maps.py')
    return se_map.astype(np.uint16, copy=False)
