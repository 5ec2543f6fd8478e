"""The embedded demo behind ``make demo``: synthetic data -> the demo's class-agnostic SAM ->
CAM / SSC / S2C training -> mIoU report (CAMs and pseudo-labels)."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from s2c.caches import embedding_dir, run_embedding_job, run_sam_cache_jobs, se_map_dir
from s2c.datasets import dataset_class_names, dataset_paths, load_cls_labels
from s2c.datasets.demo import make_demo_dataset
from s2c.evaluation import trivial_baselines
from s2c.evaluation.folder_eval import evaluate_folder
from s2c.sam.build import build_sam
from s2c.utils import load_label_png
from s2c.utils.manifest import read_manifest
from s2c.utils.threads import THREADS_ENV, available_cores, resolve_num_threads, set_num_threads

from .config import build_train_config
from .demo_sam import load_instance_set, manifest_path, single_point_miou, train_demo_sam
from .pseudo_labels import pseudo_labels_from_config, sam_method_params
from .test import run_cam_inference
from .train import train

DEMO_ROOT = 'data/demo'
#: Where ``make demo`` keeps the demo SAM (the configs' ``demo_sam_checkpoint``).
DEMO_SAM = 'work_dirs/demo_sam/sam_tiny_demo.pth'
#: Settings of the demo SAM's training (:func:`~s2c.apis.demo_sam.train_demo_sam`).
DEMO_SAM_SETTINGS = dict(steps=500, lr=5e-4, batch_size=8, objects_per_image=4, box_prob=0.3,
                         background_segments=False, seed=0)


def ensure_demo_data(data_root: str = DEMO_ROOT, seed: int = 0) -> None:
    """Generate the demo dataset unless ``data_root`` already holds one (with instance masks;
    an older one without them is regenerated: the same images, plus the instance masks)."""
    if osp.isfile(osp.join(data_root, 'cls_labels.npy')) and \
            osp.isdir(osp.join(data_root, 'SegmentationObject')):
        print(f'[demo] using the demo dataset in {data_root}')
        return
    print(f'[demo] generating the synthetic demo dataset in {data_root} (seed {seed})')
    summary = make_demo_dataset(data_root, seed=seed)
    print(f'[demo] {summary["num_train"]} train / {summary["num_val"]} val images, '
          f'images per class {summary["images_per_class"]}')


def ensure_demo_sam(data_root: str = DEMO_ROOT, out: str = DEMO_SAM,
                    settings: dict | None = None) -> dict[str, float]:
    """Train the demo's class-agnostic SAM unless ``out`` holds one made from these data with
    these settings (its manifest says), then report its single-point mIoU on the val objects.

    Args:
        data_root: Demo dataset root.
        out: Checkpoint path (a manifest ``<out>.json`` sits next to it).
        settings: :func:`~s2c.apis.demo_sam.train_demo_sam` keyword arguments
            (default :data:`DEMO_SAM_SETTINGS`).

    Returns:
        dict: ``demo_sam`` and ``random_sam``: mIoU (percent) of the single-point masks of the
        trained and of a random tiny SAM against the val instance masks.
    """
    settings = dict(DEMO_SAM_SETTINGS if settings is None else settings)
    manifest = read_manifest(manifest_path(out)) or {}
    same = (osp.isfile(out) and manifest.get('data_root') == osp.abspath(data_root)
            and all(manifest.get(k) == v for k, v in settings.items()))
    if same:
        print(f'[demo] using the demo SAM {out} (trained in {manifest["wall_s"]:.0f} s)')
    else:
        print(f'[demo] training the demo SAM (tiny, class-agnostic, train objects only) -> {out}')
        manifest = train_demo_sam(data_root, out, **settings)
        print(f'[demo] demo SAM trained in {manifest["wall_s"]:.0f} s')
    val = load_instance_set(data_root, 'val', progress=False)
    quality = dict(demo_sam=single_point_miou(build_sam('tiny', out, device='cpu'), val),
                   random_sam=single_point_miou(build_sam('tiny', None, device='cpu', seed=0),
                                                val))
    print(f'[demo] single-point mIoU on the {sum(len(o) for o in val.objects)} val objects: '
          f'demo SAM {quality["demo_sam"]:.2f}, random tiny SAM {quality["random_sam"]:.2f}')
    return quality


def demo_baselines(data_root: str = DEMO_ROOT, split: str = 'val') -> dict[str, float]:
    """mIoU of the two label-free baselines on the demo split (percent)."""
    paths = dataset_paths(dict(data_root=data_root), split=split)
    labels = load_cls_labels(paths.cls_labels_file)
    pairs = [(load_label_png(osp.join(paths.seg_dir, n + '.png')), np.nonzero(labels[n])[0])
             for n in paths.names()]
    num_classes = len(next(iter(labels.values()))) + 1
    return trivial_baselines(pairs, num_classes)


def build_demo_caches(cfg, embedding_splits: tuple[str | None, ...] = (None, ),
                      shard: tuple[int, int] | None = None) -> None:
    """Build (or complete) the SE-map and embedding caches a training config reads.

    Both jobs are resumable: existing entries are skipped, so a second
    ``make demo`` costs nothing here.

    Args:
        cfg: Training config.
        embedding_splits: Splits whose embeddings are cached (``None``: the training
            split; add ``'val'`` for the ``sam`` pseudo-labels of the val images).
        shard: ``(I, N)``: only the images ``k`` with ``k % N == I`` (N processes
            building the caches together; see :class:`~s2c.caches.runner.JobOptions`).
    """
    se_dir, emb_dir = se_map_dir(cfg), embedding_dir(cfg)
    of = f' (shard {shard[0] + 1}/{shard[1]})' if shard else ''
    if se_dir or emb_dir:
        what = [f'SE maps ({cfg.se_maps.provider.type}) -> {se_dir}'] if se_dir else []
        what += [f'SAM embeddings ({cfg.sam.model_type}) -> {emb_dir}'] if emb_dir else []
        print('[demo] ' + '; '.join(what) + of)
        summary = run_sam_cache_jobs(cfg, shard=shard)  # one SAM encoder pass per image
        if not summary.ok:
            raise RuntimeError('SAM caches incomplete:\n' + summary.format())
    for split in embedding_splits:
        if emb_dir and split is not None:
            print(f'[demo] SAM embeddings ({cfg.sam.model_type}, {split}) -> {emb_dir}{of}')
            summary = run_embedding_job(cfg, split=split, shard=shard)
            if not summary.ok:
                raise RuntimeError('embedding cache incomplete:\n' + summary.format())


def sam_pseudo_label_miou(cfg, checkpoint: str, split: str = 'val') -> float:
    """mIoU (percent) of the ``sam`` pseudo-labels (CPM's prompting of SAM with the CAM peaks,
    at full resolution) of a trained S2C model on a split.

    CAMs: multi-scale with flips (``<work_dir>/cams_<split>``); labels:
    ``<work_dir>/pl_sam_<split>``; both resumable.
    """
    cams = run_cam_inference(cfg, checkpoint, split=split, evaluate=False, progress=False)
    out = osp.join(cfg.work_dir, f'pl_sam_{split}')
    summary = pseudo_labels_from_config(cfg, cams.summary.out_dir, out, 'sam', split=split,
                                        progress=False, **sam_method_params(cfg, device='cpu'))
    if not summary.ok:
        raise RuntimeError('sam pseudo-labels incomplete:\n' + summary.format())
    paths = dataset_paths(cfg.test_dataloader.dataset, split=split)
    classes = dataset_class_names(cfg.test_dataloader.dataset)
    result = evaluate_folder(out, paths.seg_dir, paths.names(), len(classes) + 1,
                             class_names=('background', ) + tuple(classes), progress=False)
    return 100.0 * float(result.scores['miou'])


@dataclass
class DemoRow:
    """What one demo row measured.

    Attributes:
        name: Display name.
        val_miou: CAM mIoU (percent) on the val split, from the training run's validation
            (single scale, background threshold searched).
        train_miou: mIoU (percent) of the trained model's multi-scale + flip CAMs on the
            train split (background threshold searched): the seed quality WSSS papers
            report, over 4x more images than val.
        minutes: Wall time of the row (training, CAMs, pseudo-labels).
        sam_pl_miou: mIoU (percent) of its ``sam`` pseudo-labels on val, or None.
    """

    name: str
    val_miou: float
    train_miou: float
    minutes: float
    sam_pl_miou: float | None


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors 1 and 2, so data-loader workers
    and C++ warnings too) to ``path`` for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'a') as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


#: File in a row's work dir that receives the row's output (:func:`run_demo_row`).
ROW_LOG = 'demo.log'


def row_work_dir(entry: dict, work_root: str) -> str:
    """``<work_root>/<entry['work_dir'] or the config's file name without .py>``."""
    return osp.join(work_root, entry.get('work_dir')
                    or osp.splitext(osp.basename(entry['config']))[0])


def _row_config(entry: dict, work_root: str, data_root: str):
    """``(work_dir, config, embedding splits)`` of a demo row."""
    work_dir = row_work_dir(entry, work_root)
    cfg = build_train_config(entry['config'], work_dir=work_dir, data_root=data_root,
                             cfg_options=entry.get('cfg_options'))
    return work_dir, cfg, (None, 'val') if entry.get('sam_pseudo_labels') else (None, )


@contextlib.contextmanager
def _row_log(work_dir: str) -> Iterator[None]:
    """Create ``work_dir`` and send this process's output to its :data:`ROW_LOG`."""
    os.makedirs(work_dir, exist_ok=True)
    with _output_to(osp.join(work_dir, ROW_LOG)):
        yield


def _cache_parts(cfg, splits: tuple[str | None, ...]) -> set[tuple[str, str | None]]:
    """``(cache folder, split)`` pairs :func:`build_demo_caches` fills for a config."""
    se_dir, emb_dir = se_map_dir(cfg), embedding_dir(cfg)
    return ({(se_dir, None)} if se_dir else set()) | \
        ({(emb_dir, split) for split in splits} if emb_dir else set())


def build_row_caches(entry: dict, work_root: str, data_root: str,
                     shard: tuple[int, int] | None = None) -> None:
    """:func:`build_demo_caches` of a demo row's config (a worker task of :func:`run_demo`;
    output to the row's log)."""
    work_dir, cfg, splits = _row_config(entry, work_root, data_root)
    with _row_log(work_dir):
        build_demo_caches(cfg, splits, shard)


#: Tasks of :func:`run_demo` (demo SAM, cache shards, rows) queued or running, shared with
#: its worker processes (None elsewhere), and whether ``S2C_NUM_THREADS`` fixed the threads.
_TASKS_PENDING = None
_FIXED_THREADS = False


def _add(value, delta: int) -> None:
    """``value.value += delta`` under its lock (a ``multiprocessing.Value``)."""
    with value.get_lock():
        value.value += delta


def _inference_threads() -> None:
    """Before a row's CAM inference in a :func:`run_demo` worker: the cores shared by the
    tasks still queued or running (the last row measures with every core). Only inference,
    so each training keeps the thread count it started with (its result is reproducible)."""
    if _TASKS_PENDING is not None and not _FIXED_THREADS:
        threads = set_num_threads(max(1, available_cores() // max(1, _TASKS_PENDING.value)))
        print(f'[demo] CAM inference with {threads} torch thread(s)', flush=True)


def run_demo_row(name: str, entry: dict, work_root: str, data_root: str,
                 build_caches: bool = True) -> DemoRow:
    """Train one demo row and measure it (runs in a worker process of :func:`run_demo`).

    Args:
        name: Display name.
        entry: ``dict(config=..., cfg_options=..., work_dir=..., sam_pseudo_labels=False)``.
        work_root: Parent of the work dirs.
        data_root: Demo dataset root.
        build_caches: Build (complete) the row's SAM caches first; False when they were
            built before (:func:`run_demo` builds the demo SAM's caches in shards; two rows
            checking one cache at once would collide on its writer lock).

    Returns:
        DemoRow: The row's figures; its output went to ``<work_dir>/``:data:`ROW_LOG`.
    """
    start = time.time()
    work_dir, cfg, splits = _row_config(entry, work_root, data_root)
    with _row_log(work_dir):
        if build_caches:
            build_demo_caches(cfg, splits)
        runner = train(cfg)
        val_miou = float(runner.message_hub.get_scalar('val/cam/mIoU').current())
        last = osp.join(work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
        _inference_threads()
        cams = run_cam_inference(cfg, last, split='train', progress=False)
        train_miou = float(cams.evaluation['miou'])
        _inference_threads()
        sam_pl = sam_pseudo_label_miou(cfg, last) if 'val' in splits else None
    return DemoRow(name, val_miou, train_miou, (time.time() - start) / 60, sam_pl)


def _demo_worker_init(threads: int, tasks_pending) -> None:
    """Give a worker ``threads`` torch threads (``S2C_NUM_THREADS``, inherited from the
    parent, wins when set), for the demo SAM's training as well as for the rows
    (:func:`~s2c.apis.train` reads the same), and the shared count of pending tasks
    (:func:`_inference_threads`)."""
    global _TASKS_PENDING, _FIXED_THREADS
    _TASKS_PENDING, _FIXED_THREADS = tasks_pending, THREADS_ENV in os.environ
    os.environ.setdefault(THREADS_ENV, str(threads))
    set_num_threads()


def _row_kind(entry: dict, data_root: str) -> tuple[bool, bool]:
    """``(needs the demo SAM, trains CPM)`` of a row, from its config."""
    cfg = _row_config(entry, '', data_root)[1]
    return bool(cfg.get('demo_sam_checkpoint')), bool((cfg.get('model') or {}).get('cpm'))


def run_demo(configs: dict[str, str | dict], work_root: str = 'work_dirs',
             data_root: str = DEMO_ROOT, demo_sam: str | None = DEMO_SAM,
             jobs: int | None = None, sam_settings: dict | None = None) -> dict[str, float]:
    """Train each demo config and print its CAM mIoU next to the baselines.

    The rows run in ``jobs`` worker processes at once, each with
    ``cores // jobs`` torch threads (unless ``S2C_NUM_THREADS`` is set): on a 2-core
    machine two single-thread trainings finish sooner than two two-thread ones in a row.
    Rows whose config sets ``demo_sam_checkpoint`` wait for the demo SAM, which trains
    first (once; reused afterwards); then all workers build their SAM caches (SE maps,
    embeddings) together, sharded, and the CPM rows (the longest) start first. The others
    start at once. A row's CAM inference after its training uses the cores of the tasks
    no longer pending (the last row measures with all of them). Each row's output goes to
    ``<work_dir>/demo.log``; the console gets one line when a row starts and when it ends.

    Args:
        configs: Display name -> config path, or ``dict(config=..., cfg_options=...,
            work_dir=..., sam_pseudo_labels=False)`` for a variant of a config. With
            ``sam_pseudo_labels=True`` the row is followed by one for the ``sam``
            pseudo-labels of the trained model on the val split.
        work_root: Parent of the work dirs (``<work_root>/<work_dir or config name>``).
        data_root: Demo dataset root (generated if absent).
        demo_sam: Where the demo SAM is trained (once) and reported, or None to skip it.
        jobs: Rows trained at once (default: 2 when 2 or more cores are available, else 1).
        sam_settings: The demo SAM's training settings (default :data:`DEMO_SAM_SETTINGS`).

    Returns:
        dict: Display name -> val mIoU (percent), ``<name> (train)`` -> train-split CAM
        mIoU, the ``sam`` pseudo-label rows, the baselines and the demo SAM's single-point
        mIoU (``demo_sam``, ``random_sam``).
    """
    start = time.time()
    ensure_demo_data(data_root)
    entries = {name: dict(config=e) if isinstance(e, str) else dict(e)
               for name, e in configs.items()}
    jobs = jobs or min(2, available_cores())
    threads = resolve_num_threads(processes=jobs)  # S2C_NUM_THREADS when set
    print(f'[demo] {len(entries)} rows, {jobs} at a time ({threads} torch thread(s) each); '
          f'each row logs to <work_dir>/{ROW_LOG} under {work_root}')
    rows: dict[str, Future] = {}
    extra: dict[str, float] = {}
    context = get_context('spawn')
    pending = context.Value('i', 0)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_demo_worker_init,
                             initargs=(threads, pending)) as pool:

        def task(fn, *args) -> Future:
            """Submit ``fn(*args)``, counted in ``pending`` until it ends."""
            _add(pending, 1)
            future = pool.submit(fn, *args)
            future.add_done_callback(lambda _: _add(pending, -1))
            return future

        def submit(names: list[str], build_caches: bool = True) -> None:
            for name in names:
                log = osp.join(row_work_dir(entries[name], work_root), ROW_LOG)
                print(f'[demo] queued: {name} (log: {log})', flush=True)
                rows[name] = task(run_demo_row, name, entries[name], work_root, data_root,
                                  build_caches)
                rows[name].add_done_callback(lambda f, n=name, log=log: print(
                    f'[demo] finished: {n}' + (f' ({f.result().minutes:.1f} min)'
                                               if f.exception() is None
                                               else f' (FAILED: see {log})'), flush=True))

        kinds = {n: _row_kind(e, data_root) for n, e in entries.items()}
        # rows that need the demo SAM wait for it; among them the CPM rows (the longest) first
        waiting = sorted((n for n in entries if demo_sam and kinds[n][0]),
                         key=lambda n: not kinds[n][1])
        sam_future = task(ensure_demo_sam, data_root, demo_sam, sam_settings) \
            if waiting else None
        submit([n for n in entries if n not in waiting])
        if sam_future is not None:
            extra = sam_future.result()
            # the demo SAM's caches, built by the workers together in 2 shards per worker
            # (a worker still training a row joins when it is free), before those rows;
            # a row whose caches an earlier row built adds nothing
            shards, built = 2 * jobs, set()
            for name in waiting:
                _, cfg, splits = _row_config(entries[name], work_root, data_root)
                parts = _cache_parts(cfg, splits)
                if parts <= built:
                    continue
                built |= parts
                print(f'[demo] SAM caches of: {name} ({shards} shards)', flush=True)
                for shard in [task(build_row_caches, entries[name], work_root, data_root,
                                   (i, shards)) for i in range(shards)]:
                    shard.result()
            submit(waiting, build_caches=False)
        results_rows = {name: rows[name].result() for name in entries}
    baselines = demo_baselines(data_root)
    print(f'\n[demo] mIoU (%) of the CAMs (background threshold searched); '
          f'{(time.time() - start) / 60:.1f} min in all:')
    print(f'  {"":<58}{"val":>7}{"train":>8}   time')
    if extra:
        print(f'  {"demo SAM: single-point masks vs val objects":<58}{extra["demo_sam"]:7.2f}'
              f'{"":>8}   (random tiny SAM {extra["random_sam"]:.2f})')
    results: dict[str, float] = {}
    for name, row in results_rows.items():
        print(f'  {name:<58}{row.val_miou:7.2f}{row.train_miou:8.2f}   {row.minutes:.1f} min')
        results[name] = row.val_miou
        results[f'{name} (train)'] = row.train_miou
        if row.sam_pl_miou is not None:
            pl_name = '  -> its `sam` pseudo-labels (CAM peaks prompt SAM)'
            print(f'  {pl_name:<58}{row.sam_pl_miou:7.2f}')
            results[pl_name] = row.sam_pl_miou
    print(f'  {"baseline: all background":<58}{baselines["all_background"]:7.2f}')
    print(f'  {"baseline: labelled class everywhere":<58}{baselines["whole_image"]:7.2f}')
    print('  (val: single-scale CAMs of the last epoch, as in training; train: multi-scale + '
          'flip CAMs)')
    results.update({f'baseline_{k}': v for k, v in baselines.items()})
    results.update(extra)
    return results
