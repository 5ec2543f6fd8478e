"""Reading and writing per-image CAM files, and the manifest of a CAM folder.

Format: one ``<cam_dir>/<name>.npz`` per image holding

- ``keys``: ``(K,)`` int64, the 0-based foreground class indices of the
  classes the image has (VOC: 0 = aeroplane ... 19 = tvmonitor);
- ``cams``: ``(K, H, W)`` float16 in [0, 1] at the original image resolution
  (``H, W`` = image height and width), one map per entry of ``keys``.

An image without foreground classes has ``keys`` of shape ``(0,)`` and ``cams``
of shape ``(0, H, W)``. Files are written atomically (temp file + rename).
The folder's ``cams_manifest.json`` records the checkpoint and views that
made the CAMs, so that a rerun resumes only the same CAMs and pseudo-label
folders can record which CAMs they came from.
"""
from __future__ import annotations

import os.path as osp
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from s2c.utils.fileio import atomic_save_npz
from s2c.utils.manifest import claim_folder, make_manifest, read_manifest

CAM_SUFFIX = '.npz'


class CamFileError(ValueError):
    """A CAM file exists but cannot be read or does not follow the format."""


def _check_cams(path: str, keys: np.ndarray, cams: np.ndarray,
                error: type[ValueError]) -> None:
    """Raise ``error`` naming ``path`` unless keys ``(K,)`` and cams ``(K, H, W)`` agree,
    keys are unique non-negative class indices and every CAM value is finite."""
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise error(f'CAM file {path}: cams must be (K, H, W) with K = len(keys) = {len(keys)}, '
                    f'got shape {cams.shape}')
    if len(np.unique(keys)) != len(keys) or (keys < 0).any():
        raise error(f'CAM file {path}: keys must be unique non-negative class indices, '
                    f'got {keys.tolist()}')
    if not np.isfinite(cams).all():
        raise error(f'CAM file {path}: cams contain NaN or inf')


def cam_path(cam_dir: str, name: str) -> str:
    """Path of the CAM file of image ``name`` inside ``cam_dir``."""
    return osp.join(cam_dir, name + CAM_SUFFIX)


def save_cams(path: str, keys: np.ndarray | torch.Tensor | list[int],
              cams: np.ndarray | torch.Tensor) -> None:
    """Write one image's CAMs atomically.

    Args:
        path: Destination ``.npz`` file.
        keys: ``(K,)`` 0-based foreground class indices (unique, >= 0).
        cams: ``(K, H, W)`` CAMs in [0, 1] at original image resolution; stored
            as float16 (values are clipped to [0, 1] first).

    Raises:
        ValueError: When shapes disagree, keys repeat or are negative, or CAMs
            are not finite.
    """
    if isinstance(keys, torch.Tensor):
        keys = keys.detach().cpu().numpy()
    if isinstance(cams, torch.Tensor):
        cams = cams.detach().float().cpu().numpy()
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    cams = np.asarray(cams, dtype=np.float32)
    _check_cams(path, keys, cams, ValueError)
    atomic_save_npz(path, keys=keys, cams=np.clip(cams, 0.0, 1.0).astype(np.float16))


def load_cams(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one image's CAMs.

    Args:
        path: A ``.npz`` file written by :func:`save_cams` (or any producer of
            the same format).

    Returns:
        tuple: ``keys`` ``(K,)`` int64 0-based foreground class indices and
        ``cams`` ``(K, H, W)`` float32 in [0, 1] (original image resolution).

    Raises:
        FileNotFoundError: When the file does not exist (the message names it).
        CamFileError: When the file is unreadable, lacks ``keys``/``cams``, or
            the arrays have inconsistent shapes, repeated/negative keys or
            non-finite values. The message names the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'CAM file {path} not found; write CAMs with tools/test.py '
                                'CONFIG CHECKPOINT --out DIR and pass that DIR as --cams.')
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {'keys', 'cams'} - set(data.files)
            if missing:
                raise CamFileError(f'CAM file {path} lacks array(s) {sorted(missing)} '
                                   f'(has {sorted(data.files)}); expected keys and cams.')
            keys = np.asarray(data['keys'])
            cams = np.asarray(data['cams'], dtype=np.float32)
    except CamFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CamFileError(f'cannot read CAM file {path}: {e}; delete it and rerun tools/test.py '
                           '(it skips files that exist).') from e
    if keys.ndim != 1 or not np.issubdtype(keys.dtype, np.integer):
        raise CamFileError(f'CAM file {path}: keys must be a 1-D integer array, '
                           f'got {keys.dtype} {keys.shape}')
    keys = keys.astype(np.int64)
    _check_cams(path, keys, cams, CamFileError)
    return keys, cams


#: Manifest of a CAM folder: which checkpoint and views made the CAMs.
CAM_MANIFEST_NAME = 'cams_manifest.json'
CAM_KIND = 'cams'
CAM_FORMAT_VERSION = 1


def cam_manifest(checkpoint_sha256: str, scales: Sequence[float], flip: bool,
                 info: Mapping | None = None, degradation: Mapping | None = None) -> dict:
    """The manifest of a CAM folder (:mod:`s2c.utils.manifest` format).

    Args:
        checkpoint_sha256: SHA-256 of the classifier checkpoint.
        scales: Inference scales.
        flip: Whether mirrored views were added.
        info: Informational values (e.g. the checkpoint path).
        degradation: ``dict(name, level, seed)`` when the images were degraded
            (part of the key; absent for clean images).

    Returns:
        dict: ``kind='cams'``, ``key`` = checkpoint SHA-256, scales, flip (and degradation).
    """
    key = dict(checkpoint_sha256=checkpoint_sha256, scales=[float(s) for s in scales],
               flip=bool(flip))
    if degradation:
        key['degradation'] = dict(degradation)
    return make_manifest(CAM_KIND, CAM_FORMAT_VERSION, key, info)


def read_cam_manifest(cam_dir: str) -> dict | None:
    """``<cam_dir>/cams_manifest.json``, or ``None`` when absent.

    Raises:
        ManifestUnreadableError: When it exists but is unreadable.
    """
    return read_manifest(osp.join(cam_dir, CAM_MANIFEST_NAME))


def prepare_cam_dir(cam_dir: str, manifest: Mapping, overwrite: bool = False) -> None:
    """Create ``cam_dir`` and claim it for ``manifest`` (see :func:`cam_manifest`).

    Existing CAM files are only reused (resume) when the folder's manifest is
    the same; CAMs of another checkpoint, other scales or flip setting, or of
    unknown origin (``.npz`` files without a manifest) are refused unless
    ``overwrite`` (which recomputes every listed image).

    Raises:
        ManifestMismatchError: Naming the folder, the differences and the fix.
        ManifestUnreadableError: An unreadable manifest without ``overwrite``.
    """
    claim_folder(cam_dir, manifest, filename=CAM_MANIFEST_NAME, what='CAMs',
                 entry_suffix=CAM_SUFFIX, overwrite=overwrite)
