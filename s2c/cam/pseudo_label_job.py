"""Batch job: CAM files -> pseudo-label PNGs, parallel over CPU workers, resumable.

For every listed image the job reads ``<cam_dir>/<name>.npz`` (and, as the
method needs, ``<img_dir>/<name><img_suffix>`` and ``<se_dir>/<name>.png``),
applies one rule of :mod:`s2c.cam.pseudo_labels` and writes
``<out_dir>/<name>.png`` (VOC palette; 0 background, 1..C, 255 ignore)
atomically. Existing outputs are skipped unless ``overwrite``, so a killed job
resumes where it stopped. ``<out_dir>/pseudo_labels.json`` records the method
and its parameters; running different parameters into the same folder is
refused unless ``overwrite``.

Methods are entries of :data:`LABEL_METHODS`; adding one is one function
decorated with :func:`register_label_method`.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import os.path as osp
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from s2c.evaluation.seg_eval import FailureLog
from s2c.sam.se_map import load_se_map
from s2c.utils import atomic_write, save_label_png

from .cam_io import CamFileError, cam_path, load_cams, read_cam_manifest
from .crf import CRFParams
from .pseudo_labels import apply_ignore, crf_labels, se_merge_labels, threshold_labels

MANIFEST_NAME = 'pseudo_labels.json'
MANIFEST_VERSION = 1


@dataclass
class LabelInputs:
    """What a method gets for one image.

    Attributes:
        name: Image name (file stem).
        keys: ``(K,)`` int64 0-based foreground class indices.
        cams: ``(K, H, W)`` float32 CAMs in [0, 1], original resolution.
        image: ``(H, W, 3)`` uint8 RGB, or None when the method does not need it.
        se_map: ``(H, W)`` uint16 SE map (0 = no segment), or None.
    """

    name: str
    keys: np.ndarray
    cams: np.ndarray
    image: np.ndarray | None = None
    se_map: np.ndarray | None = None


@dataclass(frozen=True)
class PseudoLabelOptions:
    """Parameters of the rules (all methods see all of them).

    Attributes:
        bg_threshold: Background score of the threshold rule (``threshold``,
            ``se_merge``).
        crf: Dense-CRF parameters (``crf``).
        majority: SEPL purity threshold (``se_merge``, 0.5).
        coverage: SEPL region-coverage threshold (``se_merge``, 0.85).
        ignore_below: Pixels whose score is below this become 255; None = off.
        extra: Free-form options of methods added later (e.g. ``sam``).
    """

    bg_threshold: float | None = None
    crf: CRFParams = field(default_factory=CRFParams)
    majority: float = 0.5
    coverage: float = 0.85
    ignore_below: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


MethodFn = Callable[[LabelInputs, PseudoLabelOptions], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class LabelMethod:
    """A registered pseudo-label method.

    Attributes:
        fn: ``fn(inputs, options) -> (label (H, W) int 0..C, score (H, W) float)``.
        needs_image: Whether ``inputs.image`` must be loaded.
        needs_se_map: Whether ``inputs.se_map`` must be loaded.
        needs_bg_threshold: Whether ``options.bg_threshold`` must be set.
        params: Names of the options that define the output (for the manifest).
        required_extra: Keys the method needs in ``PseudoLabelOptions.extra``.
    """

    fn: MethodFn
    needs_image: bool = False
    needs_se_map: bool = False
    needs_bg_threshold: bool = False
    params: tuple[str, ...] = ()
    required_extra: tuple[str, ...] = ()


#: Registered methods by name (the CLI's ``--method`` choices).
LABEL_METHODS: dict[str, LabelMethod] = {}


def register_label_method(name: str, *, needs_image: bool = False, needs_se_map: bool = False,
                          needs_bg_threshold: bool = False, params: tuple[str, ...] = (),
                          required_extra: tuple[str, ...] = ()
                          ) -> Callable[[MethodFn], MethodFn]:
    """Decorator registering ``fn(inputs, options) -> (label, score)`` under ``name``.

    ``params`` names the :class:`PseudoLabelOptions` fields (or ``extra.<key>``)
    that change the output; they go into the output folder's manifest.
    Registering a name again replaces the entry (e.g. the ``sam`` placeholder).
    """

    def deco(fn: MethodFn) -> MethodFn:
        LABEL_METHODS[name] = LabelMethod(fn=fn, needs_image=needs_image,
                                          needs_se_map=needs_se_map,
                                          needs_bg_threshold=needs_bg_threshold, params=params,
                                          required_extra=required_extra)
        return fn

    return deco


@register_label_method('threshold', needs_bg_threshold=True, params=('bg_threshold',))
def _method_threshold(x: LabelInputs, o: PseudoLabelOptions) -> tuple[np.ndarray, np.ndarray]:
    return threshold_labels(x.cams, x.keys, o.bg_threshold)


@register_label_method('crf', needs_image=True, params=('crf',))
def _method_crf(x: LabelInputs, o: PseudoLabelOptions) -> tuple[np.ndarray, np.ndarray]:
    return crf_labels(x.image, x.cams, x.keys, o.crf)


@register_label_method('se_merge', needs_se_map=True, needs_bg_threshold=True,
                       params=('bg_threshold', 'majority', 'coverage'))
def _method_se_merge(x: LabelInputs, o: PseudoLabelOptions) -> tuple[np.ndarray, np.ndarray]:
    return se_merge_labels(x.cams, x.keys, x.se_map, o.bg_threshold, majority=o.majority,
                           coverage=o.coverage)




@dataclass
class JobSummary:
    """Outcome of :func:`make_pseudo_labels`.

    Attributes:
        total: Images listed.
        done: Names written by this run.
        skipped: Names whose output already existed (not rewritten).
        failures: Names that failed, by reason: ``missing_cam``, ``bad_cam``,
            ``unexpected_classes``, ``missing_cls_label``, ``missing_image``,
            ``bad_image``, ``missing_se_map``, ``bad_se_map``, ``size_mismatch``,
            ``error`` (anything the method raised).
        out_dir: Output folder.
    """

    total: int
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: FailureLog = field(default_factory=FailureLog)
    out_dir: str = ''

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return self.failures.count == 0

    def format(self) -> str:
        """Human-readable summary (counts, then the failures by reason)."""
        head = (f'pseudo-labels in {self.out_dir}: {self.total} listed, {len(self.done)} written, '
                f'{len(self.skipped)} skipped (already there), {self.failures.count} failed')
        return head if self.ok else head + '\n' + self.failures.format()


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


def load_cls_labels(source: str | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Image-level labels as ``name -> (C,) multi-hot``: a mapping, or PSA's ``cls_labels.npy``.

    Raises:
        FileNotFoundError / ValueError: Missing or malformed file (names it).
    """
    if isinstance(source, Mapping):
        return {k: np.asarray(v) for k, v in source.items()}
    from s2c.datasets.voc12 import load_cls_labels as load_file
    return {k: np.asarray(v) for k, v in load_file(source).items()}


@dataclass(frozen=True)
class DatasetPaths:
    """Where a job finds its images and image list.

    Attributes:
        data_root: Dataset root (e.g. ``data/VOCdevkit/VOC2012``).
        split_file: Image list (read with :func:`s2c.datasets.voc12.read_split`).
        img_dir: Image folder.
        img_suffix: Image file suffix (``.jpg``).
        cls_labels: The dataset's ``cls_labels.npy`` when that file exists, else ``None``.
    """

    data_root: str
    split_file: str
    img_dir: str
    img_suffix: str
    cls_labels: str | None = None


def dataset_paths(dataset_cfg: Mapping[str, Any], *, split: str | None = None,
                  data_root: str | None = None, img_dir: str | None = None) -> DatasetPaths:
    """Resolve the image folder and list from a config's ``train_dataloader.dataset``.

    The dataset config holds ``data_root``, ``ann_file`` (the list, relative to
    ``data_root`` unless absolute), ``img_dir`` (relative likewise) and
    ``img_suffix``; wrappers (``dict(type=..., dataset=dict(...))``) are
    unwrapped. Explicit arguments win over the config.

    Args:
        dataset_cfg: The dataset config (dict-like).
        split: An existing list file, or a split name ``NAME`` meaning
            ``<data_root>/ImageSets/Segmentation/NAME.txt``.
        data_root: Overrides the config's ``data_root``.
        img_dir: Overrides the image folder (absolute or relative to the cwd).

    Raises:
        ValueError: When no data root or image list can be determined.
        FileNotFoundError: ``split`` looks like a file path but does not exist.
    """
    ds: Any = dataset_cfg
    while isinstance(ds, Mapping) and 'data_root' not in ds and 'dataset' in ds:
        ds = ds['dataset']
    ds = ds if isinstance(ds, Mapping) else {}
    root = data_root or ds.get('data_root')
    if not root:
        raise ValueError('no data root: the config\'s train_dataloader.dataset has no '
                         'data_root; pass --data-root')

    def under_root(p: str) -> str:
        return p if osp.isabs(p) else osp.join(root, p)

    if split is not None:
        if not osp.isfile(split) and (split.endswith('.txt') or os.sep in split):
            raise FileNotFoundError(f'split list {split} not found (pass an existing list file '
                                    'or a split name such as train or val)')
        split_file = split if osp.isfile(split) else \
            osp.join(root, 'ImageSets', 'Segmentation', split + '.txt')
    elif ds.get('ann_file'):
        split_file = under_root(ds['ann_file'])
    else:
        raise ValueError('no image list: the dataset config has no ann_file; pass --split')
    images = img_dir or under_root(ds.get('img_dir', 'JPEGImages'))
    cls_labels = under_root(ds.get('cls_labels') or 'cls_labels.npy')
    return DatasetPaths(data_root=root, split_file=split_file, img_dir=images,
                        img_suffix=ds.get('img_suffix', '.jpg'),
                        cls_labels=cls_labels if osp.isfile(cls_labels) else None)


# ----------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class _JobConfig:
    method: str
    cam_dir: str
    out_dir: str
    img_dir: str | None
    img_suffix: str
    se_dir: str | None
    se_suffix: str
    num_classes: int
    options: PseudoLabelOptions
    cls_labels: dict[str, np.ndarray] | None


_WORKER_CFG: _JobConfig | None = None


def _init_worker(cfg: _JobConfig) -> None:
    """Pool initializer: remember the job config; one OpenCV thread per worker process."""
    global _WORKER_CFG
    _WORKER_CFG = cfg
    cv2.setNumThreads(1)


class _Fail(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _load_inputs(name: str, cfg: _JobConfig, spec: LabelMethod) -> LabelInputs:
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
    inputs = LabelInputs(name=name, keys=keys, cams=cams)
    if cfg.img_dir is not None:
        path = osp.join(cfg.img_dir, name + cfg.img_suffix)
        if not osp.isfile(path):
            raise _Fail('missing_image', f'{path} not found')
        try:
            with Image.open(path) as img:
                img_size = (img.height, img.width)
                if spec.needs_image:
                    inputs.image = np.ascontiguousarray(np.asarray(img.convert('RGB')))
        except (OSError, ValueError) as e:
            raise _Fail('bad_image', f'cannot read image {path}: {e}') from e
        if img_size != size:
            raise _Fail('size_mismatch', f'CAM size {size} differs from image {path} size '
                        f'{img_size}; CAMs must be at original image resolution')
    elif spec.needs_image:
        raise ValueError(f'method {cfg.method!r} needs the images: pass img_dir')
    if spec.needs_se_map:
        if cfg.se_dir is None:
            raise ValueError(f'method {cfg.method!r} needs SE maps: pass se_dir')
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
    spec = LABEL_METHODS[cfg.method]
    try:
        inputs = _load_inputs(name, cfg, spec)
        label, score = spec.fn(inputs, cfg.options)
        out = apply_ignore(label, score, cfg.options.ignore_below)
        save_label_png(osp.join(cfg.out_dir, name + '.png'), out)
    except _Fail as e:
        return name, e.reason, str(e)
    except Exception as e:  # noqa: BLE001 - one bad image must not stop the job
        return name, 'error', f'{type(e).__name__}: {e}'
    return name, None, ''


# ----------------------------------------------------------------------------- driver
def _pool_context() -> mp.context.BaseContext:
    """``fork`` where available and CUDA is not initialised (workers start at once, without
    re-importing torch), else ``spawn`` (each worker imports s2c first: a few seconds)."""
    torch = sys.modules.get('torch')
    cuda_live = torch is not None and torch.cuda.is_initialized()
    if 'fork' in mp.get_all_start_methods() and not cuda_live:
        return mp.get_context('fork')
    return mp.get_context('spawn')


def _manifest(method: str, spec: LabelMethod, options: PseudoLabelOptions,
              cam_dir: str) -> dict:
    params: dict[str, Any] = {}
    for key in spec.params:
        if key.startswith('extra.'):
            params[key] = options.extra.get(key[len('extra.'):])
        else:
            value = getattr(options, key)
            params[key] = asdict(value) if isinstance(value, CRFParams) else value
    params['ignore_below'] = options.ignore_below
    # which CAMs: the id of their manifest (tools/test.py), else the folder itself
    cam_manifest = read_cam_manifest(cam_dir)
    cams = cam_manifest.get('id') if cam_manifest else f'folder {osp.abspath(cam_dir)}'
    return dict(format_version=MANIFEST_VERSION, method=method, params=params, cams=cams)


def _check_manifest(out_dir: str, manifest: dict, overwrite: bool) -> None:
    path = osp.join(out_dir, MANIFEST_NAME)
    if osp.isfile(path) and not overwrite:
        with open(path) as f:
            try:
                old = json.load(f)
            except json.JSONDecodeError:
                old = None
        if old is not None and (old.get('method'), old.get('params')) != \
                (manifest['method'], json.loads(json.dumps(manifest['params']))):
            raise ValueError(
                f'{out_dir} holds pseudo-labels made with method {old.get("method")!r} and '
                f'parameters {old.get("params")}, not {manifest["method"]!r} '
                f'{manifest["params"]}; use another --out or pass --overwrite.')
        if old is not None and old.get('cams') != manifest['cams']:
            raise ValueError(
                f'{out_dir} holds pseudo-labels made from other CAMs ({old.get("cams")!r}, '
                f'now {manifest["cams"]!r}); use another --out or pass --overwrite.')
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2)


def make_pseudo_labels(cam_dir: str, out_dir: str, names: Sequence[str], method: str, *,
                       img_dir: str | None = None, img_suffix: str = '.jpg',
                       se_dir: str | None = None, se_suffix: str = '.png',
                       num_classes: int = 20, bg_threshold: float | None = None,
                       crf_params: CRFParams | None = None, majority: float = 0.5,
                       coverage: float = 0.85, ignore_below: float | None = None,
                       workers: int = 1, overwrite: bool = False,
                       cls_labels: str | Mapping[str, np.ndarray] | None = None,
                       extra: Mapping[str, Any] | None = None,
                       progress: bool = True) -> JobSummary:
    """Turn CAM files into pseudo-label PNGs.

    Args:
        cam_dir: Folder of ``<name>.npz`` CAM files (see :mod:`s2c.cam.cam_io`).
        out_dir: Output folder for ``<name>.png`` (created).
        names: Image names to process.
        method: A key of :data:`LABEL_METHODS`: ``threshold``, ``crf``,
            ``se_merge`` (``sam`` once registered).
        img_dir: Folder of the images; needed by ``crf``. When given, every
            CAM's size is checked against its image (only the header is read
            for methods that do not need pixels).
        img_suffix: Image file suffix.
        se_dir: Folder of SE maps ``<name>.png`` (uint16, 0 = no segment);
            needed by ``se_merge``.
        se_suffix: SE map file suffix.
        num_classes: Foreground classes ``C`` (VOC 20); CAM keys must be < C.
        bg_threshold: Background score for ``threshold`` / ``se_merge``.
        crf_params: Dense-CRF parameters (default: official values, alpha 10).
        majority: ``se_merge`` purity threshold.
        coverage: ``se_merge`` region-coverage threshold.
        ignore_below: Mark pixels whose score is below this as 255 (per-method
            score: see :mod:`s2c.cam.pseudo_labels`).
        workers: Processes; ``<= 1`` runs in this process.
        overwrite: Rewrite existing outputs (and accept changed parameters).
        cls_labels: Image-level labels (``name -> (C,)`` multi-hot mapping or
            the path of PSA's ``cls_labels.npy``). When given, a CAM holding a
            class the image does not have is a failure.
        extra: Method-specific options (``PseudoLabelOptions.extra``).
        progress: Show a tqdm bar.

    Returns:
        JobSummary: Written / skipped / failed names. Failed images are named
        by reason; the others are still processed.

    Raises:
        KeyError: Unknown method.
        ValueError: A required input (``img_dir``, ``se_dir``, ``bg_threshold``)
            is missing, or ``out_dir`` was made with other parameters and
            ``overwrite`` is False, or from other CAMs (the CAM folder's
            manifest id, or its path when it has none).
        FileNotFoundError: ``cam_dir`` does not exist.
    """
    if method not in LABEL_METHODS:
        raise KeyError(f'unknown pseudo-label method {method!r}; '
                       f'choose from {sorted(LABEL_METHODS)}')
    spec = LABEL_METHODS[method]
    if spec.needs_bg_threshold and bg_threshold is None:
        raise ValueError(f'method {method!r} needs a background threshold: pass --bg-threshold '
                         'T or --bg-threshold-from the JSON written by tools/test.py')
    if spec.needs_image and img_dir is None:
        raise ValueError(f'method {method!r} needs the images: pass img_dir')
    if spec.needs_se_map and se_dir is None:
        raise ValueError(f'method {method!r} needs SE maps: pass se_dir (--se-dir)')
    missing_extra = [k for k in spec.required_extra if k not in (extra or {})]
    if missing_extra:
        raise ValueError(f'method {method!r} needs extra options {missing_extra} (the tool '
                         'fills them from an S2C config, e.g. configs/s2c_voc.py)')
    if not osp.isdir(cam_dir):
        raise FileNotFoundError(f'CAM folder {cam_dir} not found; write CAMs with tools/test.py')
    options = PseudoLabelOptions(bg_threshold=bg_threshold, crf=crf_params or CRFParams(),
                                 majority=majority, coverage=coverage,
                                 ignore_below=ignore_below, extra=dict(extra or {}))
    labels = None if cls_labels is None else load_cls_labels(cls_labels)
    os.makedirs(out_dir, exist_ok=True)
    _check_manifest(out_dir, _manifest(method, spec, options, cam_dir), overwrite)

    summary = JobSummary(total=len(names), out_dir=out_dir)
    todo = []
    for name in names:
        if not overwrite and osp.isfile(osp.join(out_dir, name + '.png')):
            summary.skipped.append(name)
        else:
            todo.append(name)
    cfg = _JobConfig(method=method, cam_dir=cam_dir, out_dir=out_dir, img_dir=img_dir,
                     img_suffix=img_suffix, se_dir=se_dir, se_suffix=se_suffix,
                     num_classes=num_classes, options=options,
                     cls_labels=labels)

    def collect(result: tuple[str, str | None, str], bar: tqdm) -> None:
        name, reason, message = result
        if reason is None:
            summary.done.append(name)
        else:
            summary.failures.add(reason, name, message)
        bar.update(1)

    def make_bar() -> tqdm:
        return tqdm(total=len(todo), desc=f'pseudo-labels ({method})', unit='img',
                    disable=not progress)

    if workers <= 1 or len(todo) <= 1:
        with make_bar() as bar:
            for name in todo:
                collect(_process_one(name, cfg), bar)
    else:
        chunksize = max(1, min(16, len(todo) // (4 * workers)))
        # The pool is forked before the progress bar starts its monitor thread.
        with _pool_context().Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool, \
                make_bar() as bar:
            for result in pool.imap_unordered(_process_one, todo, chunksize=chunksize):
                collect(result, bar)
    return summary
