"""Compare prompt back-ends as pseudo-label makers, behind ``tools/compare_backends.py``.

The same CAMs and the same cached embeddings go through each back-end (and
each requested selection policy) as the ``sam`` pseudo-label method (CPM at
inference); reference rows come from the same CAMs (``threshold``, ``crf``,
``se_merge``); every row is scored against the ground truth with
:func:`~s2c.evaluation.evaluate_folder`. With degradations, each back-end also
decodes embeddings of degraded images (their own embedding caches, built here,
resumable) with the clean CAMs (or CAMs of the degraded images:
``degrade_cams`` with a classifier checkpoint), scored against the clean
ground truth.

Output folder: ``labels/<row>/`` (palette PNGs), ``rows/<row>.json`` (each
row's result and the key it was made with), ``results.md``, ``results.csv``,
``miou_time.png`` and, with degradations, ``miou_vs_degradation.png``. A rerun
reuses a finished row whose key (method, parameters, back-end checkpoint
SHA-256, CAMs, degradation, images) is unchanged and recomputes the others; an
interrupted row resumes its pseudo-label job.
"""
from __future__ import annotations

import glob
import json
import os.path as osp
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from mmengine.config import Config

from s2c.caches import run_embedding_job
from s2c.caches.layout import embedding_path, se_map_dir
from s2c.caches.preflight import MissingCacheError
from s2c.cam.cam_io import read_cam_manifest
from s2c.datasets import dataset_class_names, dataset_paths
from s2c.datasets.degradations import parse_degradations
from s2c.evaluation import evaluate_folder
from s2c.evaluation.comparison import ComparisonRow, write_comparison
from s2c.pseudo_labels import build_label_method, make_pseudo_labels, read_bg_threshold
from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends import check_policy
from s2c.utils import ManifestMismatchError, atomic_save_json
from s2c.utils.device import resolve_device
from s2c.utils.hashing import checkpoint_sha256
from s2c.utils.manifest import manifest_id
from s2c.utils.profiling import PeakRSS
from s2c.visualization.comparison_plots import plot_miou_and_time, plot_miou_vs_degradation

from .config import load_config
from .test import run_cam_inference

#: Reference methods from the same CAMs.
REFERENCE_METHODS = ('threshold', 'crf', 'se_merge')


@dataclass
class BackendSpec:
    """A back-end to compare: its CPM block and the config that holds its caches."""

    name: str
    cpm: dict
    cfg: Config
    policies: list[str] = field(default_factory=list)


def backend_specs(cfg: Config, entries: Sequence[str], policies: Sequence[str] = (), *,
                  cfg_options: dict | None = None, data_root: str | None = None
                  ) -> list[BackendSpec]:
    """Parse ``NAME`` / ``NAME=CONFIG`` entries into back-ends with their policies.

    ``NAME``: ``cfg.model.cpm`` with the back-end type replaced (its other
    settings kept), policy = the config's when the type is the config's, else
    the back-end's ``default_selection``. ``NAME=CONFIG``: that config's
    ``model.cpm`` (back-end, embedding cache, policy), loaded with the same
    overrides. ``policies``: every one of them each back-end can serve.

    Raises:
        ValueError: No ``model.cpm`` in a config, or a policy no back-end serves.
        KeyError: An unknown back-end type (lists the registered ones).
    """
    PROMPT_BACKENDS.import_from_location()
    specs = []
    for entry in entries:
        name, _, path = str(entry).partition('=')
        src = load_config(path, cfg_options=cfg_options, data_root=data_root) if path else cfg
        if not (src.get('model') or {}).get('cpm'):
            raise ValueError(f'{src.filename} has no model.cpm block: give an S2C config')
        cpm = src.model.cpm.to_dict()
        cls = PROMPT_BACKENDS.get(name)
        if cls is None:
            raise KeyError(f'unknown prompt back-end {name!r}; registered: '
                           f'{sorted(PROMPT_BACKENDS.module_dict)}')
        if not path and cpm['backend'].get('type') != name:
            cpm['backend'] = dict(cpm['backend'], type=name)
            cpm['selection'] = cls.default_selection
        specs.append(BackendSpec(name, cpm, src, [cpm.get('selection', cls.default_selection)]))
    if policies:
        used = set()
        for spec in specs:
            names = _output_names(spec)
            spec.policies = [p for p in policies if _servable(p, names)]
            used.update(spec.policies)
        unused = sorted(set(policies) - used)
        if unused:
            raise ValueError(f'no back-end serves the selection policies {unused}')
    return specs


def _output_names(spec: BackendSpec) -> tuple[str, ...]:
    backend = PROMPT_BACKENDS.build(dict(spec.cpm['backend'], device='cpu'))
    return tuple(backend.output_names)


def _servable(policy: str, names: Sequence[str]) -> bool:
    try:
        check_policy(policy, names)
    except ValueError:
        return False
    return True


def _slug(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '-', text).strip('-')


@dataclass
class _Variant:
    """One row to compute."""

    label: str
    kind: str
    method: str
    params: dict
    cams: str
    backend: str | None = None
    policy: str | None = None
    degradation: str | None = None
    checkpoint: str | None = None

    @property
    def folder(self) -> str:
        return _slug(self.label + ('@' + self.degradation if self.degradation else ''))


def run_comparison(cfg: Config, cams: str, out: str, *, backends: Sequence[str] = ('sam', ),
                   policies: Sequence[str] = (), split: str | None = None,
                   degradations: Sequence[str] = (), degradation_seed: int = 0,
                   degrade_cams: bool = False, checkpoint: str | None = None,
                   references: Sequence[str] = REFERENCE_METHODS,
                   bg_threshold: float | None = None, from_work_dirs: Sequence[str] = (),
                   cfg_options: dict | None = None, data_root: str | None = None,
                   device: str = 'auto', num_classes: int | None = None, title: str | None = None,
                   progress: bool = True) -> list[ComparisonRow]:
    """Compare back-ends (and reference methods) as pseudo-label makers; see the module doc.

    Args:
        cfg: An S2C config (dataset, caches, ``model.cpm``).
        cams: CAM folder of the clean images (``tools/test.py``).
        out: Output folder.
        backends: ``NAME`` or ``NAME=CONFIG`` entries (:func:`backend_specs`).
        policies: Selection policies to try on every back-end that serves them.
        split: Split name or list file (default: the dataset's ``ann_file``).
        degradations: ``NAME[:LEVEL]`` specs (all levels when none).
        degradation_seed: Seed of the degradations.
        degrade_cams: Use CAMs of the degraded images (needs ``checkpoint``).
        checkpoint: Classifier checkpoint (``degrade_cams``).
        references: Reference methods (subset of :data:`REFERENCE_METHODS`).
        bg_threshold: Background threshold of ``threshold`` / ``se_merge`` (default:
            ``cam_eval.json`` of the CAM folder).
        from_work_dirs: S2C training folders whose CAM mIoU joins the table.
        cfg_options: Overrides for ``NAME=CONFIG`` configs too.
        data_root: Dataset root for ``NAME=CONFIG`` configs too.
        device: Where SAM's decoder runs.
        num_classes: Foreground classes (default: those of the config's dataset).
        title: Title of the tables and plots (default: the images and the CAM folder).
        progress: Progress bars.

    Returns:
        list[ComparisonRow]: All rows (also written to ``out``).

    Raises:
        MissingCacheError: An embedding cache / SE-map folder is missing or incomplete
            (names the command that builds it).
        ValueError: Bad arguments (unknown reference, degrade_cams without checkpoint, ...).
    """
    if degrade_cams and not checkpoint:
        raise ValueError('degrade_cams needs the classifier checkpoint (--checkpoint)')
    unknown = sorted(set(references) - set(REFERENCE_METHODS))
    if unknown:
        raise ValueError(f'unknown reference methods {unknown}; choose from {REFERENCE_METHODS}')
    paths = dataset_paths(cfg.train_dataloader.dataset, split=split)
    names = paths.names()
    if not osp.isdir(cams):
        raise FileNotFoundError(f'CAM folder {cams} not found; write CAMs with tools/test.py')
    if not osp.isdir(paths.seg_dir or ''):
        raise FileNotFoundError(f'ground-truth folder {paths.seg_dir} not found (the dataset\'s '
                                'seg_dir): the comparison scores against it')
    specs = backend_specs(cfg, backends, policies, cfg_options=cfg_options, data_root=data_root)
    cmd = f'--split {split}' if split else ''
    for spec in specs:
        _require_embeddings(spec.cpm.get('embedding_dir'), names, spec, cmd)
    variants = _reference_variants(cfg, cams, references, bg_threshold, names, cmd)
    for spec in specs:
        for policy in spec.policies:
            variants.append(_backend_variant(spec, policy, cams))
    degs = parse_degradations(list(degradations))
    for name, level in degs:
        tag = f'{name}:{level}'
        deg_cams = cams
        if degrade_cams:
            deg_cams = osp.join(out, 'cams', _slug(tag))
            run_cam_inference(cfg, checkpoint, split=split or 'train', out_dir=deg_cams,
                              degradation=tag, degradation_seed=degradation_seed,
                              device=device, evaluate=False, progress=progress)
        built = set()
        for spec in specs:
            emb = f'{spec.cpm["embedding_dir"].rstrip("/")}-degraded/{_slug(tag)}'
            if emb not in built:   # back-ends sharing a cache share its degraded copy
                run_embedding_job(spec.cfg, out=emb, split=split, degradation=tag,
                                  degradation_seed=degradation_seed, progress=progress,
                                  num_workers=0)
                built.add(emb)
            for policy in spec.policies:
                v = _backend_variant(spec, policy, deg_cams, embedding_dir=emb)
                v.degradation = tag
                variants.append(v)
    classes = dataset_class_names(cfg.train_dataloader.dataset)
    if num_classes is not None and num_classes != len(classes):
        classes = tuple(str(i) for i in range(1, num_classes + 1))
    rows = [_run_variant(v, out, names, paths, device, classes, progress) for v in variants]
    rows += [_training_row(wd) for wd in from_work_dirs]
    title = title or f'{len(names)} images of {osp.basename(paths.split_file)}, CAMs {cams}'
    write_comparison(rows, osp.join(out, 'results.md'), osp.join(out, 'results.csv'), title)
    plot_miou_and_time(rows, osp.join(out, 'miou_time.png'), title)
    if degs:
        plot_miou_vs_degradation(rows, osp.join(out, 'miou_vs_degradation.png'), title)
    return rows


def _require_embeddings(emb_dir: str | None, names: Sequence[str], spec: BackendSpec,
                        cmd: str) -> None:
    missing = [n for n in names if not emb_dir or not osp.isfile(embedding_path(emb_dir, n))]
    if missing:
        config = spec.cfg.filename or 'CONFIG'
        raise MissingCacheError(
            f'back-end {spec.name!r}: the embedding cache {emb_dir} lacks {len(missing)} of '
            f'{len(names)} images ({", ".join(missing[:3])}...). Build it:\n    python '
            f'tools/cache_sam_embeddings.py {config} {cmd}'.rstrip())


def _cams_id(cams: str) -> str:
    manifest = read_cam_manifest(cams)
    return manifest_id(manifest) if manifest and 'key' in manifest else osp.abspath(cams)


def _reference_variants(cfg: Config, cams: str, references: Sequence[str],
                        bg_threshold: float | None, names: Sequence[str],
                        cmd: str) -> list[_Variant]:
    if bg_threshold is None and {'threshold', 'se_merge'} & set(references):
        path = osp.join(cams, 'cam_eval.json')
        if not osp.isfile(path):
            raise ValueError(f'no background threshold: pass --bg-threshold, or score the CAMs '
                             f'first (tools/test.py writes {path})')
        bg_threshold = read_bg_threshold(path)
    out = []
    for method in references:
        params: dict[str, Any] = {}
        if method in ('threshold', 'se_merge'):
            params['bg_threshold'] = bg_threshold
        if method == 'se_merge':
            se_dir = se_map_dir(cfg)
            missing = [n for n in names if not se_dir or not osp.isfile(osp.join(se_dir,
                                                                                 n + '.png'))]
            if missing:
                raise MissingCacheError(
                    f'se_merge needs SE maps: {se_dir} lacks {len(missing)} of {len(names)} '
                    f'images. Build them:\n    python tools/cache_se_maps.py '
                    f'{cfg.filename or "CONFIG"} {cmd}'.rstrip())
            params['se_dir'] = se_dir
        out.append(_Variant(method, 'reference', method, params, cams))
    return out


def _backend_variant(spec: BackendSpec, policy: str, cams: str,
                     embedding_dir: str | None = None) -> _Variant:
    cpm = dict(spec.cpm, selection=policy)
    if embedding_dir:
        cpm['embedding_dir'] = embedding_dir
    return _Variant(f'{spec.name} / {policy}', 'backend', 'sam', dict(cpm=cpm), cams,
                    backend=spec.name, policy=policy,
                    checkpoint=cpm['backend'].get('checkpoint'))


def _run_variant(v: _Variant, out: str, names: Sequence[str], paths: Any, device: str,
                 classes: Sequence[str], progress: bool) -> ComparisonRow:
    """Compute (or reuse) one row (``classes``: the foreground class names)."""
    num_classes = len(classes)
    labels_dir = osp.join(out, 'labels', v.folder)
    record = osp.join(out, 'rows', v.folder + '.json')
    key = dict(method=v.method, params=_jsonable(v.params), cams=_cams_id(v.cams),
               degradation=v.degradation, names=len(names), first=names[:1],
               checkpoint_sha256=checkpoint_sha256(v.checkpoint) if v.checkpoint else None)
    if osp.isfile(record):
        with open(record) as f:
            saved = json.load(f)
        if saved.get('key') == key:
            return ComparisonRow.from_dict(saved['row'])
    params = dict(v.params)
    se_dir = params.pop('se_dir', None)
    dev = resolve_device(device)
    method = build_label_method(v.method, **(dict(params, device=str(dev))
                                            if v.method == 'sam' else params))
    timers = _time_backend(method) if v.method == 'sam' else None
    if dev.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(dev)
    job = dict(img_dir=paths.img_dir, img_suffix=paths.img_suffix, se_dir=se_dir,
               num_classes=num_classes, cls_labels=paths.cls_labels, progress=progress)
    with PeakRSS(0.01) as mem:
        start = time.perf_counter()
        try:
            summary = make_pseudo_labels(v.cams, labels_dir, names, method,
                                         overwrite=osp.isfile(record), **job)
        except ManifestMismatchError:   # a folder of other settings and no record: redo
            summary = make_pseudo_labels(v.cams, labels_dir, names, method, overwrite=True,
                                         **job)
        wall = time.perf_counter() - start
    done = max(1, len(summary.done))
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == 'cuda'
            else mem.peak - mem.base) / 2 ** 20
    ev = evaluate_folder(labels_dir, paths.seg_dir, names, num_classes=num_classes + 1,
                         class_names=('background', *classes), progress=False)
    sc = ev.scores
    row = ComparisonRow(
        label=v.label, kind=v.kind, backend=v.backend, policy=v.policy,
        degradation=v.degradation, miou=100 * sc['miou'], mprecision=100 * sc['mprecision'],
        mrecall=100 * sc['mrecall'],
        per_class_iou={c: 100 * float(x) for c, x in zip(classes, sc['iou'])},
        prepare_s=timers['prepare'] / done if timers else float('nan'),
        decode_s=timers['decode'] / done if timers else float('nan'),
        total_s=wall / done if summary.done else float('nan'), peak_mib=peak,
        images=ev.num_images, failed=len(summary.failed) + ev.failures.count,
        labels_dir=labels_dir)
    atomic_save_json(record, dict(key=key, row=row.to_dict()))
    return row


def _time_backend(method: Any) -> dict[str, float]:
    """Wrap the ``sam`` method's back-end ``prepare`` / ``decode`` with timers."""
    backend = method.cpm.backend(method.device)
    timers = dict(prepare=0.0, decode=0.0)

    def timed(fn: Any, key: str) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            if backend.device.type == 'cuda':
                torch.cuda.synchronize(backend.device)
            timers[key] += time.perf_counter() - start
            return result
        return run

    backend.prepare = timed(backend.prepare, 'prepare')
    backend.decode = timed(backend.decode, 'decode')
    return timers


def _training_row(work_dir: str) -> ComparisonRow:
    """An S2C training run's CAM mIoU: ``cams_*/cam_eval.json`` of ``tools/test.py``, else the
    last validation ``cam/mIoU`` in its MMEngine ``vis_data/scalars.json``."""
    label = f'training: {osp.basename(osp.normpath(work_dir))}'
    for path in sorted(glob.glob(osp.join(work_dir, 'cams_*', 'cam_eval.json'))):
        with open(path) as f:
            ev = json.load(f)
        return ComparisonRow(label, 'training', miou=float(ev['miou']),
                             mprecision=float(ev.get('mprecision', float('nan'))),
                             mrecall=float(ev.get('mrecall', float('nan'))),
                             images=int(ev.get('scored', 0)),
                             note=f'8-view CAM mIoU from {path}')
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                       reverse=True):
        values = []
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if 'cam/mIoU' in entry:
                    values.append(float(entry['cam/mIoU']))
        if values:
            return ComparisonRow(label, 'training', miou=values[-1],
                                 note=f'last validation cam/mIoU in {path}')
    raise FileNotFoundError(f'{work_dir} has neither cams_*/cam_eval.json (tools/test.py) nor '
                            'a validation cam/mIoU in */vis_data/scalars.json')


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
