"""The one job runner of the SAM caches: resumable, shardable, verifiable, repairable.

A cache job computes one entry file per image into a cache folder. The runner
does everything that is not specific to the entry:

Manifest
    The folder is claimed with :func:`s2c.utils.manifest.claim_folder` before any
    entry is written: an equal manifest means resume, other settings are refused
    unless ``overwrite`` (which deletes the old entries). Only rank 0 writes it;
    other ranks wait for it and check it.

Resume
    Every entry is written to ``.tmp-*`` and renamed (:func:`s2c.utils.atomic_write`),
    so a job killed at any point (even ``kill -9``) leaves no partial file under a
    final name; rerunning skips entries that pass the job's quick check and
    computes the rest. Stale ``.tmp-*`` files are deleted on start (all of them
    when this run is the only writer, otherwise only those older than 10 minutes,
    so concurrent shards are safe).

Verify and repair
    ``verify`` only reads every entry in full and lists the bad ones, ending with
    the remedy; a folder that does not exist or has no manifest is an error, not
    a cache with every entry missing. ``repair`` runs the full check, deletes the
    bad entries and computes them and the missing ones.

Sharding
    ``--shard I/N`` and torchrun ranks (:mod:`s2c.utils.dist`); under torchrun each
    rank uses ``cuda:LOCAL_RANK`` when the device is CUDA.

Failures
    An unreadable image (or any per-image error) is recorded in the summary and
    the job goes on; the tools exit non-zero at the end and print the list.
"""
from __future__ import annotations

import contextlib
import logging
import os
import os.path as osp
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from mmengine.logging import print_log
from tqdm import tqdm

from s2c.datasets.paths import DatasetPaths, dataset_paths
from s2c.utils.device import resolve_device
from s2c.utils.dist import dist_rank_world, parse_shard, select_names
from s2c.utils.fileio import TMP_PREFIX, check_free_space, clean_stale_tmp
from s2c.utils.job_summary import JobSummary, format_bytes
from s2c.utils.locks import folder_lock
from s2c.utils.manifest import MANIFEST_NAME, claim_folder, entry_files, read_manifest

from .image_loop import compute_images
from .layout import CACHE_TOOLS, train_dataset_cfg

#: ``.tmp-*`` files older than this are stale even when other writers may be running.
STALE_TMP_AGE_S = 600.0
#: Verify problem tags: the entry is missing, the entry is bad, or its image is unreadable
#: (which says nothing about the entry).
MISSING, BAD_ENTRY, IMAGE_UNREADABLE = 'missing', 'bad_entry', 'image_unreadable'

#: ``(tag, message)`` of a bad entry, or ``None`` for a good one.
Problem = tuple[str, str]


@dataclass
class JobOptions:
    """How a cache job runs (the flags of ``tools/cache_*.py``).

    Attributes:
        split: ``None`` (the training dataset's ``ann_file``), a split name
            (``ImageSets/Segmentation/NAME.txt``) or a list file.
        names: Explicit image ids (override ``split``).
        out: Cache folder overriding the config's.
        shard: ``'I/N'`` or ``(I, N)``: images ``k`` with ``k % N == I``.
        overwrite: Replace a cache of other settings (or an unreadable manifest)
            and recompute every entry.
        verify: Only check every entry in full.
        repair: Compute, but check existing entries in full first, delete the
            bad ones and compute them again (takes precedence over ``verify``).
        batch_size: Images per model call (embedding job).
        num_workers: Image-decoding threads (0: decode inline).
        progress: Show progress bars.
        degradation: ``'NAME:LEVEL'`` (:mod:`s2c.datasets.degradations`): the
            embedding job encodes the degraded images (its own cache folder; the
            degradation is part of the manifest key). Embedding job only.
        degradation_seed: Seed of the degradation's random parts.
    """

    split: str | None = None
    names: Sequence[str] | None = None
    out: str | None = None
    shard: str | tuple[int, int] | None = None
    overwrite: bool = False
    verify: bool = False
    repair: bool = False
    batch_size: int = 1
    num_workers: int = 2
    progress: bool = True
    degradation: str | None = None
    degradation_seed: int = 0

    def __post_init__(self) -> None:
        self.shard = parse_shard(self.shard)
        self.batch_size = max(1, int(self.batch_size))

    @classmethod
    def of(cls, options: JobOptions | None = None, **overrides: Any) -> JobOptions:
        """``options`` (or the defaults) with ``overrides`` applied.

        Raises:
            TypeError: For an unknown option name (lists the known ones).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f'unknown cache job options {unknown}; known: {sorted(known)}')
        base = {f.name: getattr(options, f.name) for f in fields(cls)} if options else {}
        return cls(**{**base, **overrides})

    @property
    def verify_only(self) -> bool:
        """Verify without repairing."""
        return self.verify and not self.repair


@dataclass
class CacheJob:
    """What one cache computes and how its entries are checked.

    Attributes:
        kind: ``'se_maps'`` or ``'sam_embeddings'``.
        cache_dir: The cache folder.
        suffix: Entry file suffix (``.png`` / ``.npy``).
        manifest: This run's manifest (``None`` when only verifying).
        entry_path: ``name -> file``.
        quick_check: Resume check ``name -> reason`` (``None`` = good): header, shape, size.
        full_check: Verify check ``name -> (tag, message)`` or ``None`` (tags
            :data:`MISSING`, :data:`BAD_ENTRY`, :data:`IMAGE_UNREADABLE`).
        compute: ``[(name, image)] -> [(name, error or None)]``; writes the entries.
        image_transform: ``(name, image) -> image`` applied to each decoded image
            before ``compute`` (e.g. a degradation), or ``None``.
        batch_size: Images per ``compute`` call.
        entry_bytes: Expected size of one entry on disk (an upper estimate; 0 = unknown):
            a run that would not fit on the cache's disk is refused before it starts.
    """

    kind: str
    cache_dir: str
    suffix: str
    manifest: dict | None
    entry_path: Callable[[str], str]
    quick_check: Callable[[str], str | None]
    full_check: Callable[[str], Problem | None]
    compute: Callable[[list[tuple[str, np.ndarray]]], list[tuple[str, str | None]]]
    batch_size: int = 1
    image_transform: Callable[[str, np.ndarray], np.ndarray] | None = None
    entry_bytes: int = 0


def job_images(cfg: Any, options: JobOptions) -> tuple[DatasetPaths, list[str]]:
    """The dataset paths and image ids of a job (``cfg.train_dataloader.dataset``).

    Raises:
        KeyError: When the config has no training dataset.
        ValueError / FileNotFoundError: No data root, no list, a missing list file.
    """
    paths = dataset_paths(train_dataset_cfg(cfg), split=options.split,
                          require_list=options.names is None)
    names = list(options.names) if options.names is not None else paths.names()
    return paths, names


def job_device(device: str | torch.device | None) -> torch.device:
    """The device of a job ('auto' = CUDA when available); ``cuda:LOCAL_RANK`` under
    torchrun when no index is given."""
    device = resolve_device(device)
    _, world, local_rank = dist_rank_world()
    if device.type == 'cuda' and device.index is None and world > 1:
        device = torch.device('cuda', local_rank)
    return device


def manifest_for_verify(cache_dir: str, kind: str) -> dict:
    """The manifest of a cache that is about to be verified.

    Verifying needs a finished cache: a folder that does not exist or has no
    manifest (a wrong ``--out`` / ``--data-root``, or a cache never built) is an
    error, not a cache with every entry missing.

    Raises:
        FileNotFoundError: When ``cache_dir`` or its manifest does not exist
            (says how to fix it; nothing is checked or created).
        ManifestUnreadableError: When the manifest exists but is unreadable.
    """
    tool = CACHE_TOOLS.get(kind, 'the cache tool')
    fix = (f'Check --data-root and --out (or data_root and the cache folder of the config), '
           f'or build the cache first: run the same command ({tool}) without --verify.')
    if not osp.isdir(cache_dir):
        raise FileNotFoundError(f'{cache_dir} does not exist: there is no {kind} cache to '
                                f'verify, nothing was checked. {fix}')
    manifest = read_manifest(osp.join(cache_dir, MANIFEST_NAME))
    if manifest is None:
        raise FileNotFoundError(f'{cache_dir} has no {MANIFEST_NAME}: it is not a {kind} cache '
                                f'made by {tool}, nothing was checked. {fix}')
    return manifest


def _size_on_disk(cache_dir: str, suffix: str) -> tuple[int, int]:
    total = count = 0
    for entry in entry_files(cache_dir, suffix):
        with contextlib.suppress(FileNotFoundError):
            total += entry.stat().st_size
            count += 1
    return total, count


def _remedy(summary: JobSummary, suffix: str, max_files: int = 50) -> str:
    """The last line of a verify summary with bad entries: what to run."""
    bad = summary.failures.names(BAD_ENTRY)
    missing = summary.failures.names(MISSING)
    no_image = summary.failures.names(IMAGE_UNREADABLE)
    parts = []
    if bad:
        files = ', '.join(n + suffix for n in bad[:max_files])
        if len(bad) > max_files:
            files += f', ... ({len(bad) - max_files} more, listed above)'
        parts.append(f'{len(bad)} bad file(s) in {summary.out_dir}: {files}. Rerun the same '
                     'command with --repair instead of --verify (repair=True): it deletes '
                     'them and computes them again'
                     + (f', with the {len(missing)} missing one(s)' if missing else '')
                     + ' (a plain rerun may skip them: its resume check reads only headers)')
    elif missing:
        parts.append(f'{len(missing)} missing entries: rerun the same command without '
                     '--verify (or with --repair) to compute them')
    if no_image:
        parts.append(f'{len(no_image)} entries could not be checked because their image is '
                     'unreadable: fix the images (or --data-root)')
    return '  remedy: ' + '; '.join(parts) + '.'


def _verify(job: CacheJob, mine: list[str], summary: JobSummary, bar_kw: dict) -> JobSummary:
    manifest_for_verify(job.cache_dir, job.kind)
    for name in tqdm(mine, desc=f'verify {job.kind}', **bar_kw):
        problem = job.full_check(name)
        if problem is not None:
            summary.fail(name, problem[1], problem[0])
    if not summary.ok:
        summary.notes.append(_remedy(summary, job.suffix))
    return summary


def _todo(job: CacheJob, mine: list[str], summary: JobSummary, repair: bool,
          bar_kw: dict) -> list[str]:
    """Names to compute: those without a good entry (repair: bad ones deleted first)."""
    todo = []
    desc = 'verifying existing entries' if repair else 'checking existing entries'
    for name in tqdm(mine, desc=desc, leave=False, **bar_kw):
        if repair:
            problem = job.full_check(name)
            if problem is None:
                summary.skipped.append(name)
                continue
            todo.append(name)
            # An unreadable image says nothing about the entry: keep it (computing
            # fails on the image and reports it).
            if problem[0] == BAD_ENTRY:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(job.entry_path(name))
                summary.repaired[name] = problem[1]
        elif job.quick_check(name) is None:
            summary.skipped.append(name)
        else:
            todo.append(name)
    return todo


def missing_entries(job: CacheJob, names: Sequence[str], options: JobOptions) -> int:
    """How many entries of this shard (all its ranks: they share the disk) have no file yet;
    0 when the job does not estimate its entry size."""
    if not job.entry_bytes:
        return 0
    shard_names = select_names(names, options.shard, 0, 1)
    return sum(not osp.isfile(job.entry_path(n)) for n in shard_names)


@contextlib.contextmanager
def claimed_job(job: CacheJob, names: Sequence[str], mine: list[str], summary: JobSummary,
                options: JobOptions, bar_kw: dict) -> Iterator[list[str]]:
    """Hold a cache folder for computing; yield the names of ``mine`` to compute.

    Before anything is written: refuse when the missing entries would not fit on the
    disk; then take the folder lock, claim the folder with the job's manifest, delete
    stale temporary files and find what is left to do (skipped and repaired names go
    into ``summary``). The lock is held until the ``with`` body ends.

    Raises:
        InsufficientDiskSpaceError: The missing entries would not fit.
        FolderBusyError: Another job holds the folder.
        ManifestMismatchError / ManifestUnreadableError: See :func:`run_cache_job`.
    """
    rank, world, _ = dist_rank_world()
    repair = options.repair and not options.overwrite
    # Every rank checks what all ranks of this shard will add (they share the disk);
    # rewritten entries replace their files one at a time and add nothing.
    missing = missing_entries(job, names, options)
    need = missing * job.entry_bytes
    free = check_free_space(job.cache_dir, need, f'{missing:,} {job.kind} entries') \
        if need else 0
    sole_writer = world == 1 and (options.shard is None or options.shard[1] == 1)
    # A sole writer may delete every temporary file it finds: no other job may write
    # the folder meanwhile (shards and ranks share it, with age-based cleaning).
    with folder_lock(job.cache_dir, exclusive=sole_writer, what=f'a {job.kind} cache'):
        replaced = claim_folder(job.cache_dir, job.manifest, what='a cache',
                                entry_suffix=job.suffix, overwrite=options.overwrite,
                                delete_on_replace=True, rank=rank)
        n_tmp = clean_stale_tmp(job.cache_dir, None if sole_writer else STALE_TMP_AGE_S)
        if n_tmp:
            print_log(f'removed {n_tmp} stale temporary file(s) ({TMP_PREFIX}*) from '
                      f'{job.cache_dir}', logger='current')
        if options.overwrite or replaced:
            todo = list(mine)
        else:
            todo = _todo(job, mine, summary, repair, bar_kw)
        size = ''
        if need:
            size = f', about {format_bytes(need)} to write ({format_bytes(free)} free)'
        print_log(f'[{job.kind}] {job.cache_dir}: {len(mine)} images, {len(summary.skipped)} '
                  f'already cached, {len(todo)} to compute{size}'
                  + (f' ({len(summary.repaired)} bad entries deleted)' if repair else ''),
                  logger='current', level=logging.INFO)
        yield todo


def new_summary(job: CacheJob, names: Sequence[str], options: JobOptions
                ) -> tuple[JobSummary, list[str], dict]:
    """This process's share of ``names``, its empty summary and the progress-bar options."""
    rank, world, _ = dist_rank_world()
    mine = select_names(names, options.shard, rank, world)
    mode = 'verify' if options.verify_only else \
        'repair' if options.repair and not options.overwrite else 'compute'
    summary = JobSummary(job.kind, job.cache_dir, mode, total=len(mine), shard=options.shard,
                         rank=rank, world=world)
    bar_kw = dict(disable=not options.progress, dynamic_ncols=True, unit='img',
                  position=rank if world > 1 else None)
    return summary, mine, bar_kw


def finish_summary(job: CacheJob, summary: JobSummary, t0: float) -> JobSummary:
    """Drop ``done`` names whose entry vanished, set the wall time and the size on disk."""
    # An entry reported done must exist (guards against a concurrent --overwrite elsewhere).
    for name in list(summary.done):
        if not osp.isfile(job.entry_path(name)):
            summary.done.remove(name)
            summary.fail(name, 'entry vanished after writing (another run with --overwrite?)')
    summary.wall_s = time.perf_counter() - t0
    summary.bytes_on_disk, summary.entries_on_disk = _size_on_disk(job.cache_dir, job.suffix)
    return summary


def run_cache_job(job: CacheJob, paths: DatasetPaths, names: Sequence[str],
                  options: JobOptions) -> JobSummary:
    """Verify, or compute the entries of this process (resuming, optionally repairing).

    Args:
        job: What the job computes and checks.
        paths: Where the images are.
        names: Every image id of the list (this process takes its share).
        options: Shard, overwrite, verify, repair, workers, progress.

    Returns:
        JobSummary: The outcome (``summary.ok`` is False when an image failed or,
        for verify, an entry is bad or missing).

    Raises:
        FileNotFoundError: Verify on a folder without cache (see :func:`manifest_for_verify`).
        ManifestMismatchError: The folder holds a cache of other settings.
        ManifestUnreadableError: Its manifest is unreadable and ``overwrite`` is False.
    """
    t0 = time.perf_counter()
    summary, mine, bar_kw = new_summary(job, names, options)
    if options.verify_only:
        _verify(job, mine, summary, bar_kw)
        return finish_summary(job, summary, t0)

    def record(name: str, err: str | None) -> bool:
        if err is None:
            summary.done.append(name)
        else:
            summary.fail(name, err)
        return err is None

    with claimed_job(job, names, mine, summary, options, bar_kw) as todo:
        compute_images(todo, paths, options.num_workers, job.compute, record, summary.fail,
                       batch_size=job.batch_size, transform=job.image_transform,
                       desc=job.kind, bar_kw=bar_kw)
        return finish_summary(job, summary, t0)
