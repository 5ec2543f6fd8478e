"""Batch job: CAM files -> pseudo-label PNGs, parallel over CPU workers, resumable.

For every listed image the job reads ``<cam_dir>/<name>.npz`` (and, as the
method needs, ``<img_dir>/<name><img_suffix>`` and ``<se_dir>/<name>.png``),
applies a method of ``LABEL_METHODS`` (:mod:`s2c.pseudo_labels.methods`) and
writes ``<out_dir>/<name>.png`` (VOC palette; 0 background, 1..C, 255 ignore)
atomically. Existing outputs are skipped unless ``overwrite``, so a killed job
resumes where it stopped. ``<out_dir>/pseudo_labels.json`` (a manifest,
:mod:`s2c.utils.manifest`) records the method, its parameters and which CAMs
(the id of the CAM folder's manifest); running other parameters or other CAMs
into the same folder is refused unless ``overwrite``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import os.path as osp
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from s2c.cam.cam_io import CamFileError, cam_path, load_cams, read_cam_manifest
from s2c.datasets.cls_labels import load_cls_labels
from s2c.registry import LABEL_METHODS
from s2c.utils.image_io import image_size, read_rgb_image
from s2c.utils.job_summary import JobSummary
from s2c.utils.label_io import save_label_png
from s2c.utils.manifest import MANIFEST_NAME as CACHE_MANIFEST_NAME
from s2c.utils.manifest import (
    claim_folder,
    make_manifest,
    manifest_id,
    read_manifest,
)
from s2c.utils.se_map_io import load_se_map
from s2c.utils.workers import worker_pool

from .methods import LabelInputs, LabelMethod
from .rules import apply_ignore

MANIFEST_NAME = 'pseudo_labels.json'
KIND = 'pseudo_labels'
FORMAT_VERSION = 1


def read_bg_threshold(path: str) -> float:
    """Read the searched background threshold from a ``tools/test.py`` JSON result.

    Looks for a number under ``bg_threshold`` or ``threshold`` at the top level,
    then inside a ``cam`` or ``result`` object.

    Raises:
        FileNotFoundError: When the file is missing.
        ValueError: When it is not JSON or holds no such number (names the file
            and the keys it has).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'threshold file {path} not found (written by tools/test.py)')
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'{path} is not valid JSON: {e}') from e
    for scope in (data, data.get('cam'), data.get('result')) if isinstance(data, dict) else ():
        if isinstance(scope, dict):
            for key in ('bg_threshold', 'threshold'):
                value = scope.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    return float(value)
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise ValueError(f'{path} has no finite "bg_threshold" or "threshold" (keys: {keys}; '
                     'tools/test.py writes null when no image had ground truth); pass '
                     '--bg-threshold T instead.')


def build_label_method(method: str | Mapping | LabelMethod, **params: Any) -> LabelMethod:
    """A method from its registry name (+ parameters), a config dict, or as given.

    Raises:
        KeyError: Unknown method (lists the registered ones).
        ValueError: Missing or unknown parameters (the method says which).
    """
    if isinstance(method, LabelMethod):
        return method
    cfg = dict(type=method) if isinstance(method, str) else dict(method)
    cfg.update(params)
    if not isinstance(cfg.get('type'), str) or LABEL_METHODS.get(cfg['type']) is None:
        raise KeyError(f'unknown pseudo-label method {cfg.get("type")!r}; '
                       f'choose from {sorted(LABEL_METHODS.module_dict)}')
    try:
        return LABEL_METHODS.build(cfg)
    except TypeError as e:
        raise ValueError(f'pseudo-label method {cfg["type"]!r}: {e}') from e


# ----------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class _JobConfig:
    method: LabelMethod
    cam_dir: str
    out_dir: str
    img_dir: str | None
    img_suffix: str
    se_dir: str | None
    se_suffix: str
    num_classes: int
    ignore_below: float | None
    cls_labels: dict[str, np.ndarray] | None


_WORKER_CFG: _JobConfig | None = None


def _init_worker(cfg: _JobConfig) -> None:
    """Pool initializer: remember the job config."""
    global _WORKER_CFG
    _WORKER_CFG = cfg


class _Fail(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _load_inputs(name: str, cfg: _JobConfig) -> LabelInputs:
    method = cfg.method
    try:
        keys, cams = load_cams(cam_path(cfg.cam_dir, name))
    except FileNotFoundError as e:
        raise _Fail('missing_cam', str(e)) from e
    except CamFileError as e:
        raise _Fail('bad_cam', str(e)) from e
    if keys.size and keys.max() >= cfg.num_classes:
        raise _Fail('bad_cam', f'class index {int(keys.max())} >= num_classes '
                    f'{cfg.num_classes} in {cam_path(cfg.cam_dir, name)}')
    if cfg.cls_labels is not None:
        if name not in cfg.cls_labels:
            raise _Fail('missing_cls_label', f'{name} has no entry in the image-level labels')
        present = set(np.flatnonzero(np.asarray(cfg.cls_labels[name]) > 0).tolist())
        extra = sorted(set(keys.tolist()) - present)
        if extra:
            raise _Fail('unexpected_classes',
                        f'CAM has classes {extra} the image does not have (labels: '
                        f'{sorted(present)}); recompute CAMs with the right labels')
    size = cams.shape[1:]
    inputs = LabelInputs(name=name, keys=keys, cams=cams, num_classes=cfg.num_classes)
    if cfg.img_dir is not None:
        path = osp.join(cfg.img_dir, name + cfg.img_suffix)
        if not osp.isfile(path):
            raise _Fail('missing_image', f'{path} not found')
        try:
            if method.needs_image:  # the reader every stage uses (16-bit, alpha: one rule)
                inputs.image = read_rgb_image(path)
                img_size = inputs.image.shape[:2]
            else:
                img_size = image_size(path)
        except (OSError, ValueError) as e:
            raise _Fail('bad_image', f'cannot read image {path}: {e}') from e
        if img_size != size:
            raise _Fail('size_mismatch', f'CAM size {size} differs from image {path} size '
                        f'{img_size}; CAMs must be at original image resolution')
    if method.needs_se_map:
        path = osp.join(cfg.se_dir, name + cfg.se_suffix)
        try:
            inputs.se_map = load_se_map(path)
        except FileNotFoundError as e:
            raise _Fail('missing_se_map', str(e)) from e
        except ValueError as e:
            raise _Fail('bad_se_map', str(e)) from e
        if inputs.se_map.shape != size:
            raise _Fail('size_mismatch', f'CAM size {size} differs from SE map {path} size '
                        f'{inputs.se_map.shape}')
    return inputs


def _process_one(name: str, cfg: _JobConfig | None = None) -> tuple[str, str | None, str]:
    """Make one pseudo-label. Returns ``(name, failure reason or None, message)``."""
    cfg = cfg if cfg is not None else _WORKER_CFG
    assert cfg is not None, 'worker not initialised'
    try:
        inputs = _load_inputs(name, cfg)
        label, score = cfg.method(inputs)
        out = apply_ignore(label, score, cfg.ignore_below)
        save_label_png(osp.join(cfg.out_dir, name + '.png'), out)
    except _Fail as e:
        return name, e.reason, str(e)
    except Exception as e:  # noqa: BLE001 - one bad image must not stop the job
        return name, 'error', f'{type(e).__name__}: {e}'
    return name, None, ''


# ----------------------------------------------------------------------------- driver
def label_manifest(method: LabelMethod, ignore_below: float | None, cam_dir: str,
                   se_dir: str | None = None) -> dict:
    """The manifest of a pseudo-label folder: every input that changes the labels.

    Method, parameters (for ``sam`` these include the back-end and its checkpoint),
    ``ignore_below``, which CAMs (the id of the CAM folder's manifest, else the folder's
    path) and, for methods that read SE maps, which SE maps (the id of the SE cache's
    manifest, else the folder's path): labels from two SE caches never mix in one folder.
    """
    cams_manifest = read_cam_manifest(cam_dir)
    if cams_manifest and 'key' in cams_manifest:
        cams = manifest_id(cams_manifest)
    elif cams_manifest and cams_manifest.get('id'):  # written by an older s2c
        cams = str(cams_manifest['id'])
    else:
        cams = f'folder {osp.abspath(cam_dir)}'
    key = dict(method=method.name, params=method.params, ignore_below=ignore_below, cams=cams)
    info = dict(cam_dir=osp.abspath(cam_dir))
    if method.needs_se_map and se_dir is not None:
        se_manifest = read_manifest(osp.join(se_dir, CACHE_MANIFEST_NAME))
        key['se_maps'] = manifest_id(se_manifest) if se_manifest and 'key' in se_manifest \
            else f'folder {osp.abspath(se_dir)}'
        info['se_dir'] = osp.abspath(se_dir)
    return make_manifest(KIND, FORMAT_VERSION, key, info)


def make_pseudo_labels(cam_dir: str, out_dir: str, names: Sequence[str],
                       method: str | Mapping | LabelMethod, *, img_dir: str | None = None,
                       img_suffix: str = '.jpg', se_dir: str | None = None,
                       se_suffix: str = '.png', num_classes: int = 20,
                       ignore_below: float | None = None, workers: int = 1,
                       overwrite: bool = False,
                       cls_labels: str | Mapping[str, np.ndarray] | None = None,
                       progress: bool = True, **method_params: Any) -> JobSummary:
    """Turn CAM files into pseudo-label PNGs.

    Args:
        cam_dir: Folder of ``<name>.npz`` CAM files (see :mod:`s2c.cam.cam_io`).
        out_dir: Output folder for ``<name>.png`` (created).
        names: Image names to process.
        method: A registered method name (``threshold``, ``crf``, ``se_merge``,
            ``sam``) whose parameters are ``method_params``, a config dict, or a
            built :class:`~s2c.pseudo_labels.methods.LabelMethod`.
        img_dir: Folder of the images; needed by ``crf``. When given, every
            CAM's size is checked against its image (only the header is read
            for methods that do not need pixels).
        img_suffix: Image file suffix.
        se_dir: Folder of SE maps ``<name>.png`` (uint16, 0 = no segment);
            needed by ``se_merge``.
        se_suffix: SE map file suffix.
        num_classes: Foreground classes ``C`` (VOC 20); CAM keys must be < C.
        ignore_below: Mark pixels whose score is below this as 255 (per-method
            score: see :mod:`s2c.pseudo_labels.rules`).
        workers: Processes; ``<= 1`` runs in this process.
        overwrite: Rewrite existing outputs (and accept changed parameters).
        cls_labels: Image-level labels (``name -> (C,)`` multi-hot mapping or
            the path of PSA's ``cls_labels.npy``). When given, a CAM holding a
            class the image does not have is a failure.
        progress: Show a tqdm bar.
        **method_params: Parameters of ``method`` given by name (``bg_threshold``,
            ``crf``, ``majority``, ``coverage``, ``cpm``, ``device``).

    Returns:
        JobSummary: Written / skipped / failed names. Failed images are named
        by reason; the others are still processed.

    Raises:
        KeyError: Unknown method.
        ValueError: A required input (``img_dir``, ``se_dir``, ``bg_threshold``,
            ``cpm``) is missing, a parameter the method does not take is given,
            or ``out_dir`` was made with other parameters or other CAMs and
            ``overwrite`` is False.
        FileNotFoundError: ``cam_dir`` does not exist.
    """
    label_method = build_label_method(method, **method_params)
    if label_method.needs_image and img_dir is None:
        raise ValueError(f'method {label_method.name!r} needs the images: pass img_dir')
    if label_method.needs_se_map and se_dir is None:
        raise ValueError(f'method {label_method.name!r} needs SE maps: pass se_dir (--se-dir)')
    if not osp.isdir(cam_dir):
        raise FileNotFoundError(f'CAM folder {cam_dir} not found; write CAMs with tools/test.py')
    labels = None if cls_labels is None else load_cls_labels(cls_labels)
    stamped = osp.isfile(osp.join(out_dir, MANIFEST_NAME))
    claim_folder(out_dir, label_manifest(label_method, ignore_below, cam_dir, se_dir),
                 filename=MANIFEST_NAME, what='pseudo-labels', overwrite=overwrite)

    summary = JobSummary(KIND, out_dir, total=len(names))
    start = time.perf_counter()
    todo = []
    for name in names:
        if not overwrite and osp.isfile(osp.join(out_dir, name + '.png')):
            summary.skipped.append(name)
        else:
            todo.append(name)
    cfg = _JobConfig(method=label_method, cam_dir=cam_dir, out_dir=out_dir, img_dir=img_dir,
                     img_suffix=img_suffix, se_dir=se_dir, se_suffix=se_suffix,
                     num_classes=num_classes, ignore_below=ignore_below, cls_labels=labels)

    def collect(result: tuple[str, str | None, str], bar: tqdm) -> None:
        name, reason, message = result
        if reason is None:
            summary.done.append(name)
        else:
            summary.fail(name, message, reason)
        bar.update(1)

    def make_bar() -> tqdm:
        return tqdm(total=len(todo), desc=f'pseudo-labels ({label_method.name})', unit='img',
                    disable=not progress)

    if workers <= 1 or len(todo) <= 1:
        with make_bar() as bar:
            for name in todo:
                collect(_process_one(name, cfg), bar)
    else:
        chunksize = max(1, min(16, len(todo) // (4 * workers)))
        # The pool is made before the progress bar starts its monitor thread.
        with worker_pool(workers, _init_worker, (cfg,)) as pool, make_bar() as bar:
            for result in pool.imap_unordered(_process_one, todo, chunksize=chunksize):
                collect(result, bar)
    summary.wall_s = time.perf_counter() - start
    if not stamped and not summary.done and not summary.skipped and summary.failures.count:
        # Every image failed: leave the folder unstamped, so a rerun with other (fixed)
        # inputs is not refused as "made with other settings".
        with contextlib.suppress(FileNotFoundError):
            os.remove(osp.join(out_dir, MANIFEST_NAME))
    return summary
