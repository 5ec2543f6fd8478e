"""Reading and writing per-image CAM files.

Format (DESIGN.md section 5): one ``<cam_dir>/<name>.npz`` per image holding

- ``keys``: ``(K,)`` int64, the 0-based foreground class indices of the
  classes the image has (VOC: 0 = aeroplane ... 19 = tvmonitor);
- ``cams``: ``(K, H, W)`` float16 in [0, 1] at the original image resolution
  (``H, W`` = image height and width), one map per entry of ``keys``.

An image without foreground classes has ``keys`` of shape ``(0,)`` and ``cams``
of shape ``(0, H, W)``. Files are written atomically (temp file + rename).
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import zipfile

import numpy as np
import torch

from s2c.utils import atomic_save_npz, atomic_write

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


CAM_MANIFEST_NAME = 'cams_manifest.json'
CAM_MANIFEST_VERSION = 1


class CamManifestMismatch(ValueError):
    """A CAM folder holds CAMs made by another checkpoint or with other settings."""


def cam_manifest(checkpoint_sha256: str, scales: list[float] | tuple[float, ...],
                 flip: bool) -> dict:
    """What produced a CAM folder: checkpoint SHA-256, inference scales, flip.

    Returns:
        dict: ``format_version``, ``checkpoint_sha256``, ``scales`` (list of float),
        ``flip`` and ``id`` (a short hash of the other fields, recorded by the
        pseudo-label job to tie its outputs to these CAMs).
    """
    key = dict(format_version=CAM_MANIFEST_VERSION, checkpoint_sha256=checkpoint_sha256,
               scales=[float(s) for s in scales], flip=bool(flip))
    key['id'] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return key


def read_cam_manifest(cam_dir: str) -> dict | None:
    """``<cam_dir>/cams_manifest.json`` as a dict, or ``None`` when absent or unreadable."""
    path = osp.join(cam_dir, CAM_MANIFEST_NAME)
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prepare_cam_dir(cam_dir: str, manifest: dict, overwrite: bool = False) -> None:
    """Create ``cam_dir`` and claim it for ``manifest`` (see :func:`cam_manifest`).

    Existing CAM files are only reused (resume) when the folder's manifest is the
    same; CAMs of another checkpoint, other scales or flip setting, or of unknown
    origin (``.npz`` files without a manifest) are refused unless ``overwrite``
    (which recomputes every listed image).

    Raises:
        CamManifestMismatch: Naming the folder, the differences and the fix.
    """
    os.makedirs(cam_dir, exist_ok=True)
    old = read_cam_manifest(cam_dir)
    if not overwrite:
        if old is not None:
            diffs = [f'{k}: {old.get(k)!r} -> {manifest[k]!r}' for k in
                     ('checkpoint_sha256', 'scales', 'flip', 'format_version')
                     if old.get(k) != manifest[k]]
            if diffs:
                raise CamManifestMismatch(
                    f'{cam_dir} holds CAMs made differently ({"; ".join(diffs)}); pass another '
                    '--out, or --overwrite to recompute them.')
        elif any(e.name.endswith(CAM_SUFFIX) for e in os.scandir(cam_dir)):
            raise CamManifestMismatch(
                f'{cam_dir} holds CAM files of unknown origin (no {CAM_MANIFEST_NAME}); pass '
                'another --out, or --overwrite to recompute them.')
    with atomic_write(osp.join(cam_dir, CAM_MANIFEST_NAME)) as tmp, open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2)
