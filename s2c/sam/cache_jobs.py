"""The two SAM cache jobs (SE maps, image embeddings): resumable, shardable, verifiable.

Both jobs run once per dataset, from a notebook or through the thin tools
``tools/cache_se_maps.py`` and ``tools/cache_sam_embeddings.py``::

    summary = run_se_map_job(cfg, split='train_aug')
    summary = run_embedding_job(cfg, shard=(0, 4))
    print(summary.format())

Image list
    ``cfg.train_dataloader.dataset`` gives ``data_root``, ``ann_file`` (relative
    to ``data_root``), ``img_dir`` (default ``JPEGImages``; mmseg-style
    ``data_prefix.img_path`` also works) and ``img_suffix`` (default ``.jpg``).
    ``split='NAME'`` reads ``<data_root>/ImageSets/Segmentation/NAME.txt``
    instead of ``ann_file`` (a path ending in ``.txt`` is used as is).

Output
    ``<data_root>/se_maps/<tag>/`` and ``<data_root>/sam_embeddings/<tag>/``
    (:mod:`s2c.sam.cache_layout`), a config ``root`` or ``out`` overrides it.

Manifest (``manifest.json``)
    ``{"kind", "format_version", "key": {...}, "info": {...}}``. ``key`` holds
    everything that changes the content (provider and parameters, overlap rule,
    SAM model type, checkpoint SHA-256 or the random-init seed, autocast, record
    shapes) and must be equal for a run to write into an existing cache: a
    different key is refused (:class:`ManifestMismatchError`, listing what
    differs) unless ``overwrite=True``, which deletes the old entries and writes
    the new manifest. An unreadable manifest (e.g. truncated) is refused alike
    (:class:`~s2c.sam.cache_layout.ManifestUnreadableError`) and replaced alike
    with ``overwrite=True``. ``info`` (date, versions, checkpoint path, image
    list) is informational only. The manifest is written once, atomically, by
    rank 0 (the only writer when not under torchrun); other ranks wait for it and
    check it.

Resume
    Every entry is written to ``.tmp-*`` and renamed (:func:`s2c.utils.atomic_write`),
    so a job killed at any point (even ``kill -9``) leaves no partial file under a
    final name; rerunning skips entries that pass a quick check (header, shape,
    size; for SE maps also the size of the image) and computes the rest. Stale
    ``.tmp-*`` files are deleted on start (all of them when this run is the only
    writer, i.e. one process and no ``--shard``; otherwise only those older than
    10 minutes, so concurrent shards are safe). With ``overwrite=True`` every
    entry of the run is recomputed.

Verify and repair
    ``verify=True`` (``--verify``) only reads every entry in full (SE maps: decoded,
    size of the image; embeddings: CRC-32, sizes vs the image) and lists the bad
    ones, ending with the remedy. It refuses a directory that does not exist or
    has no manifest (``FileNotFoundError``) instead of reporting counts. Some damage
    (a truncated PNG whose header still parses, a flipped byte in an embedding)
    passes the quick check of a resumed run; ``repair=True`` (``--repair``) runs the
    full check, deletes the bad entries and computes them and the missing ones.

Sharding
    ``shard=(I, N)`` takes images ``k`` with ``k % N == I`` of the list (strided,
    so shards get a similar mix). Under torchrun (env ``RANK``/``WORLD_SIZE``, or
    an initialised process group through ``mmengine.dist.get_dist_info``) rank
    ``r`` of ``W`` then takes every ``W``-th image of that shard starting at ``r``.
    The union of all shards is the whole list and shards are disjoint. Under
    torchrun each rank uses ``cuda:LOCAL_RANK`` when the device is CUDA.

Failures
    An unreadable or corrupt image (or any per-image error) is recorded in
    ``JobSummary.failed`` with its reason and the job goes on; the tools exit
    non-zero at the end and print the list.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import os.path as osp
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import s2c
from s2c.datasets.transforms.loading import read_rgb_image
from s2c.utils import atomic_write, resolve_device
from s2c.utils.fileio import TMP_PREFIX

from . import cache_layout as layout
from .embedding_cache import (
    EMBEDDING_FORMAT_VERSION,
    EMBEDDING_KIND,
    check_entry,
    entry_dtype,
    save_entry,
)

SE_MAP_KIND = 'se_maps'
SE_MAP_FORMAT_VERSION = 1
#: Seed used to build SAM when ``sam.checkpoint`` is ``None`` (random weights, tests/demo).
RANDOM_INIT_SEED = 0
#: ``.tmp-*`` files older than this are stale even when other writers may be running.
STALE_TMP_AGE_S = 600.0
#: Start of a verify reason that is about the image, not the entry (repair keeps the entry).
IMAGE_UNREADABLE = 'its image is unreadable'
#: Verify reason of an entry whose file does not exist.
MISSING = 'missing'


class ManifestMismatchError(RuntimeError):
    """The cache directory was made with another model or other parameters."""


# --------------------------------------------------------------------------------------
# logging


def _log(msg: str, level: str = 'INFO') -> None:
    import logging

    from mmengine.logging import print_log
    print_log(msg, logger='current', level=getattr(logging, level))


# --------------------------------------------------------------------------------------
# image list, sharding, ranks


@dataclass
class ImageList:
    """Images a job runs over.

    Attributes:
        data_root: Dataset root.
        img_dir: Image folder relative to ``data_root``.
        img_suffix: File suffix (``.jpg``).
        names: Image ids in list order.
        list_file: The list the names came from (``None`` when given directly).
    """

    data_root: str
    img_dir: str
    img_suffix: str
    names: list[str]
    list_file: str | None = None

    def image_path(self, name: str) -> str:
        """``<data_root>/<img_dir>/<name><img_suffix>``."""
        return osp.join(self.data_root, self.img_dir, name + self.img_suffix)


def _dataset_cfg(cfg: Mapping) -> Mapping:
    loader = cfg.get('train_dataloader')
    if not loader or 'dataset' not in loader:
        raise KeyError('the config has no train_dataloader.dataset; the cache jobs read data_root, '
                       'ann_file, img_dir and img_suffix from it')
    ds = loader['dataset']
    while 'data_root' not in ds and 'dataset' in ds:  # dataset wrappers
        ds = ds['dataset']
    if 'data_root' not in ds:
        raise KeyError('train_dataloader.dataset has no data_root')
    return ds


def resolve_image_list(cfg: Mapping, split: str | None = None,
                       names: Sequence[str] | None = None) -> ImageList:
    """The images of a job, from ``cfg.train_dataloader.dataset``.

    Args:
        cfg: The config.
        split: ``None`` (the dataset's ``ann_file``), a split name (``'train'`` ->
            ``<data_root>/ImageSets/Segmentation/train.txt``) or a ``.txt`` path.
        names: Explicit image ids (overrides ``split``).

    Returns:
        ImageList: Root, folder, suffix and names.

    Raises:
        KeyError: When the config lacks the dataset keys.
        FileNotFoundError: When the list file does not exist.
    """
    from s2c.datasets.voc12 import read_split

    ds = _dataset_cfg(cfg)
    data_root = str(ds['data_root'])
    img_dir = ds.get('img_dir') or (ds.get('data_prefix') or {}).get('img_path') or 'JPEGImages'
    img_suffix = ds.get('img_suffix') or '.jpg'
    if names is not None:
        return ImageList(data_root, img_dir, img_suffix, list(names), None)
    if split is None:
        if not ds.get('ann_file'):
            raise KeyError('train_dataloader.dataset has no ann_file; pass split=NAME (--split)')
        list_file = osp.join(data_root, ds['ann_file'])
    elif split.endswith('.txt') or os.sep in split:
        list_file = split
    else:
        list_file = osp.join(data_root, 'ImageSets', 'Segmentation', split + '.txt')
    return ImageList(data_root, img_dir, img_suffix, read_split(list_file), list_file)


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """Parse ``'I/N'`` (``0 <= I < N``).

    Raises:
        ValueError: On a malformed or out-of-range value.
    """
    if text is None:
        return None
    if isinstance(text, str):
        try:
            i_str, n_str = text.split('/')
            index, count = int(i_str), int(n_str)
        except ValueError:
            raise ValueError(f'--shard expects I/N (e.g. 0/4), got {text!r}') from None
    else:
        index, count = (int(v) for v in text)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f'shard {index}/{count}: need N >= 1 and 0 <= I < N')
    return index, count


def shard_names(names: Sequence[str], index: int, count: int) -> list[str]:
    """Image ``k`` of ``names`` goes to shard ``k % count``; return shard ``index``."""
    return list(names[index::count])


def dist_rank_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` of this process.

    From an initialised ``torch.distributed`` group (``mmengine.dist.get_dist_info``)
    or else the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    ``(0, 1, 0)`` for a plain process.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from mmengine.dist import get_dist_info
        rank, world = get_dist_info()
    else:
        rank = int(os.environ.get('RANK', 0))
        world = int(os.environ.get('WORLD_SIZE', 1))
    local_rank = int(os.environ.get('LOCAL_RANK', rank if world > 1 else 0))
    return rank, world, local_rank


def select_names(names: Sequence[str], shard: tuple[int, int] | None, rank: int,
                 world: int) -> list[str]:
    """This process's images: shard ``I/N`` of the list, then every ``world``-th from ``rank``."""
    mine = list(names) if shard is None else shard_names(names, *shard)
    return shard_names(mine, rank, world) if world > 1 else mine


def image_size(path: str) -> tuple[int, int]:
    """``(H, W)`` of an image from its header (no decoding)."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
    return h, w


# --------------------------------------------------------------------------------------
# manifest


def _plain(obj: Any) -> Any:
    """JSON round trip of ``obj`` (ConfigDicts and tuples become dicts and lists)."""
    return json.loads(json.dumps(layout._to_plain(obj), default=str))


def _flatten(obj: Any, prefix: str = '') -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}.{k}' if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: obj}


def manifest_differences(old: Mapping, new: Mapping) -> list[str]:
    """Human-readable differences between two manifests (kind, version and key only).

    Returns:
        list[str]: Lines ``'key.path: cache has X, this run has Y'``; empty when equal.
    """
    a = _flatten({'kind': old.get('kind'), 'format_version': old.get('format_version'),
                  'key': old.get('key')})
    b = _flatten({'kind': new.get('kind'), 'format_version': new.get('format_version'),
                  'key': new.get('key')})
    lines = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, '<absent>'), b.get(k, '<absent>')
        if va != vb:
            lines.append(f'{k}: cache has {va!r}, this run has {vb!r}')
    return lines


def make_manifest(kind: str, format_version: int, key: Mapping, info: Mapping) -> dict:
    """Assemble a manifest dict (JSON-plain)."""
    info = dict(info)
    info.setdefault('created', datetime.datetime.now().isoformat(timespec='seconds'))
    info.setdefault('s2c_version', s2c.__version__)
    info.setdefault('torch_version', torch.__version__)
    info.setdefault('host', socket.gethostname())
    return _plain(dict(kind=kind, format_version=format_version, key=dict(key), info=info))


def write_manifest(cache_dir: str, manifest: Mapping) -> None:
    """Write ``<cache_dir>/manifest.json`` atomically."""
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_write(layout.manifest_path(cache_dir)) as tmp, open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write('\n')


def _entry_files(cache_dir: str, suffix: str) -> Iterator[os.DirEntry]:
    if not osp.isdir(cache_dir):
        return
    for entry in os.scandir(cache_dir):
        if entry.name.endswith(suffix) and not entry.name.startswith('.') and entry.is_file():
            yield entry


#: Tool that builds each cache (named in messages).
_TOOLS = {SE_MAP_KIND: 'tools/cache_se_maps.py', EMBEDDING_KIND: 'tools/cache_sam_embeddings.py'}


def _manifest_for_verify(cache_dir: str, kind: str) -> dict:
    """The manifest of a cache that is about to be verified.

    Verifying needs a finished cache: a directory that does not exist or has no
    manifest (a wrong ``--out`` / ``--data-root``, or a cache never built) is an
    error, not a cache with every entry missing.

    Args:
        cache_dir: Cache directory.
        kind: ``'se_maps'`` or ``'sam_embeddings'`` (names the tool in the message).

    Returns:
        dict: The manifest.

    Raises:
        FileNotFoundError: When ``cache_dir`` or its ``manifest.json`` does not
            exist (says how to fix it; nothing is checked or created).
        ManifestUnreadableError: When the manifest exists but is unreadable.
    """
    tool = _TOOLS.get(kind, 'the cache tool')
    fix = (f'Check --data-root and --out (or data_root and the {kind}.root of the config), or '
           f'build the cache first: run the same command ({tool}) without --verify.')
    if not osp.isdir(cache_dir):
        raise FileNotFoundError(f'{cache_dir} does not exist: there is no {kind} cache to '
                                f'verify, nothing was checked. {fix}')
    manifest = layout.read_manifest(cache_dir)
    if manifest is None:
        raise FileNotFoundError(f'{cache_dir} has no {layout.MANIFEST_NAME}: it is not a '
                                f'{kind} cache made by {tool}, nothing was checked. {fix}')
    return manifest


def _mismatch_message(cache_dir: str, diffs: Sequence[str]) -> str:
    return (f'{cache_dir} already holds a cache made with other settings:\n  - '
            + '\n  - '.join(diffs)
            + '\nRerun with --overwrite (overwrite=True) to replace it (its entries are deleted), '
            'or write elsewhere with --out DIR.')


def prepare_cache_dir(cache_dir: str, manifest: Mapping, *, entry_suffix: str,
                      overwrite: bool = False, rank: int = 0,
                      timeout_s: float = 600.0, poll_s: float = 0.2) -> bool:
    """Check or write the manifest of ``cache_dir`` before a job writes entries.

    Rank 0 writes the manifest when there is none. When the existing one has a
    different key, or cannot be read (e.g. truncated), it raises, or with
    ``overwrite`` deletes the old entries and writes the new manifest. Other
    ranks wait (up to ``timeout_s``) until the directory holds a manifest equal
    to ``manifest`` and raise at once on a mismatching or unreadable one without
    ``overwrite``.

    Args:
        cache_dir: Cache directory (created when missing).
        manifest: The manifest this run would write (:func:`make_manifest`).
        entry_suffix: Suffix of entry files (``.png`` / ``.npy``), for deletion.
        overwrite: Replace a cache made with other settings.
        rank: This process's rank (only rank 0 writes).
        timeout_s: How long other ranks wait for rank 0's manifest.
        poll_s: Poll interval of the wait.

    Returns:
        bool: ``True`` when an existing cache with other settings (or with an
        unreadable manifest) was replaced.

    Raises:
        ManifestMismatchError: On a different key without ``overwrite`` (lists the
            differences and the two ways out).
        ManifestUnreadableError: A ``ValueError``: the existing manifest is
            unreadable and ``overwrite`` is False.
        TimeoutError: When a non-zero rank waited in vain.
    """
    os.makedirs(cache_dir, exist_ok=True)
    if rank != 0:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                old = layout.read_manifest(cache_dir)
            except layout.ManifestUnreadableError:
                if not overwrite:
                    raise
                old = None  # rank 0 replaces it
            if old is not None:
                diffs = manifest_differences(old, manifest)
                if not diffs:
                    return False
                if not overwrite:
                    raise ManifestMismatchError(_mismatch_message(cache_dir, diffs))
            if time.monotonic() > deadline:
                raise TimeoutError(f'rank {rank}: no matching manifest appeared in {cache_dir} '
                                   f'within {timeout_s:.0f} s (did rank 0 fail?)')
            time.sleep(poll_s)
    try:
        old = layout.read_manifest(cache_dir)
    except layout.ManifestUnreadableError as exc:
        if not overwrite:
            raise
        # Nothing says what made the entries: treat it like a mismatching manifest.
        diffs = [f'the old manifest is unreadable ({exc.__cause__ or "not a JSON object"})']
    else:
        if old is None:
            write_manifest(cache_dir, manifest)
            return False
        diffs = manifest_differences(old, manifest)
        if not diffs:
            return False
        if not overwrite:
            raise ManifestMismatchError(_mismatch_message(cache_dir, diffs))
    _log(f'--overwrite: replacing the cache in {cache_dir} ({"; ".join(diffs)}); deleting its '
         'entries', 'WARNING')
    for entry in list(_entry_files(cache_dir, entry_suffix)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(entry.path)
    write_manifest(cache_dir, manifest)
    return True


def clean_stale_tmp(cache_dir: str, max_age_s: float | None = None) -> int:
    """Delete ``.tmp-*`` files left by killed runs.

    Args:
        cache_dir: Cache directory.
        max_age_s: Only delete files not modified for this long (``None``: all).

    Returns:
        int: Number of files deleted.
    """
    if not osp.isdir(cache_dir):
        return 0
    now = time.time()
    removed = 0
    for entry in os.scandir(cache_dir):
        if not entry.name.startswith(TMP_PREFIX) or not entry.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if max_age_s is None or now - entry.stat().st_mtime > max_age_s:
                os.remove(entry.path)
                removed += 1
    return removed


def cache_size_on_disk(cache_dir: str, suffix: str) -> tuple[int, int]:
    """``(bytes, entries)`` of the entry files in ``cache_dir``."""
    total = count = 0
    for entry in _entry_files(cache_dir, suffix):
        with contextlib.suppress(FileNotFoundError):
            total += entry.stat().st_size
            count += 1
    return total, count


# --------------------------------------------------------------------------------------
# summary


def _fmt_bytes(n: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
        n /= 1024
    return f'{n:.1f} TiB'


@dataclass
class JobSummary:
    """Outcome of a cache job (or of ``--verify``).

    Attributes:
        kind: ``'se_maps'`` or ``'sam_embeddings'``.
        cache_dir: Output directory.
        mode: ``'compute'``, ``'repair'`` (compute after the full check) or ``'verify'``.
        total: Images assigned to this process.
        done: Names computed and written by this run.
        skipped: Names that already had a valid entry.
        failed: Name -> reason (compute: the error; verify: why the entry is bad,
            ``'missing'`` when it does not exist).
        repaired: Repair: name -> why its old entry was bad (deleted, then
            computed again: also in ``done``, or in ``failed`` if that failed).
        wall_s: Wall time of the run in seconds.
        bytes_on_disk: Size of all entries in ``cache_dir``.
        entries_on_disk: Number of entries in ``cache_dir``.
        shard: ``(I, N)`` or ``None``; rank / world: torchrun position.
    """

    kind: str
    cache_dir: str
    mode: str = 'compute'
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    bytes_on_disk: int = 0
    entries_on_disk: int = 0
    shard: tuple[int, int] | None = None
    rank: int = 0
    world: int = 1
    #: Entry file suffix (``.png`` / ``.npy``), to name files in the verify remedy.
    suffix: str = ''

    @property
    def ok(self) -> bool:
        """No failed (or, for verify, bad) entry."""
        return not self.failed

    @property
    def images_per_s(self) -> float:
        """Images computed (``done``) or checked (verify) per second of wall time."""
        n = self.total if self.mode == 'verify' else len(self.done)
        return n / self.wall_s if self.wall_s > 0 else 0.0

    def format(self, max_failed: int = 50) -> str:
        """Multi-line text for the log / terminal.

        Args:
            max_failed: At most this many failed / bad / repaired names are listed.

        Returns:
            str: The summary; a verify summary with bad or missing entries ends
            with the remedy line (the bad files and ``--repair``).
        """
        where = []
        if self.shard is not None:
            where.append(f'shard {self.shard[0]}/{self.shard[1]}')
        if self.world > 1:
            where.append(f'rank {self.rank}/{self.world}')
        head = f'[{self.kind}] {self.mode} summary' + (f' ({", ".join(where)})' if where else '')
        lines = [head, f'  cache dir   : {self.cache_dir}']
        if self.mode != 'verify':
            lines.append(f'  images      : {self.total} = done {len(self.done)} + skipped '
                         f'{len(self.skipped)} + failed {len(self.failed)}')
            lines.append(f'  wall time   : {self.wall_s:.1f} s ({self.images_per_s:.2f} images/s '
                         'computed)')
        else:
            lines.append(f'  images      : {self.total} checked, {self.total - len(self.failed)} '
                         f'good, {len(self.failed)} bad')
            lines.append(f'  wall time   : {self.wall_s:.1f} s')
        per = self.bytes_on_disk / self.entries_on_disk if self.entries_on_disk else 0
        lines.append(f'  size on disk: {_fmt_bytes(self.bytes_on_disk)} in {self.entries_on_disk} '
                     f'entries ({_fmt_bytes(per)} per entry)')
        if self.repaired:
            lines.append(f'  REPAIRED ({len(self.repaired)}) - bad entries deleted and computed '
                         'again; they were:')
            lines.extend(_listing(self.repaired, max_failed))
        if self.failed:
            label = 'BAD ENTRIES' if self.mode == 'verify' else 'FAILED'
            lines.append(f'  {label} ({len(self.failed)}):')
            lines.extend(_listing(self.failed, max_failed))
            if self.mode == 'verify':
                lines.append(self._remedy(max_failed))
        return '\n'.join(lines)

    def _remedy(self, max_files: int) -> str:
        """The last line of a verify summary with bad entries: what to run."""
        bad = [n for n, r in self.failed.items() if entry_is_bad(r)]
        missing = [n for n, r in self.failed.items() if r == MISSING]
        no_image = len(self.failed) - len(bad) - len(missing)
        parts = []
        if bad:
            files = ', '.join(n + self.suffix for n in bad[:max_files])
            if len(bad) > max_files:
                files += f', ... ({len(bad) - max_files} more, listed above)'
            parts.append(f'{len(bad)} bad file(s) in {self.cache_dir}: {files}. Rerun the same '
                         'command with --repair instead of --verify (repair=True): it deletes '
                         'them and computes them again'
                         + (f', with the {len(missing)} missing one(s)' if missing else '')
                         + ' (a plain rerun may skip them: its resume check reads only headers)')
        elif missing:
            parts.append(f'{len(missing)} missing entries: rerun the same command without '
                         '--verify (or with --repair) to compute them')
        if no_image:
            parts.append(f'{no_image} entries could not be checked because their image is '
                         'unreadable: fix the images (or --data-root)')
        return '  remedy: ' + '; '.join(parts) + '.'


def entry_is_bad(reason: str) -> bool:
    """Whether a verify ``reason`` condemns the entry itself (not: missing, or only
    its image unreadable, which says nothing about the entry)."""
    return reason != MISSING and not reason.startswith(IMAGE_UNREADABLE)


def _listing(reasons: Mapping[str, str], max_lines: int) -> list[str]:
    """``'    name: reason'`` lines, at most ``max_lines`` plus a count of the rest."""
    lines = [f'    {name}: {reason}' for name, reason in list(reasons.items())[:max_lines]]
    if len(reasons) > max_lines:
        lines.append(f'    ... and {len(reasons) - max_lines} more')
    return lines


# --------------------------------------------------------------------------------------
# generic runner


@dataclass
class _JobSpec:
    """What differs between the two jobs."""

    kind: str
    cache_dir: str
    suffix: str
    manifest: dict
    entry_path: Callable[[str], str]
    #: (name, full) -> reason or None
    check: Callable[[str, bool], str | None]
    #: list of (name, image) -> list of (name, error or None)
    compute: Callable[[list[tuple[str, np.ndarray]]], list[tuple[str, str | None]]]
    batch_size: int = 1


def _prefetch(names: Sequence[str], images: ImageList, workers: int,
              depth: int) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Yield ``(name, image or None, error or None)`` in order, decoding ahead in threads."""
    if workers <= 0:
        for name in names:
            try:
                image = read_rgb_image(images.image_path(name))
            except Exception as exc:  # any unreadable image is a failed entry, not a crash
                yield name, None, str(exc)
            else:
                yield name, image, None
        return
    queue: deque[tuple[str, Future]] = deque()
    it = iter(names)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        def fill() -> None:
            while len(queue) < depth:
                try:
                    n = next(it)
                except StopIteration:
                    return
                queue.append((n, pool.submit(read_rgb_image, images.image_path(n))))

        fill()
        while queue:
            name, fut = queue.popleft()
            fill()
            try:
                image = fut.result()
            except Exception as exc:  # any unreadable image is a failed entry, not a crash
                yield name, None, str(exc)
            else:
                yield name, image, None


def _run(spec: _JobSpec, images: ImageList, *, shard: tuple[int, int] | None, overwrite: bool,
         verify: bool, progress: bool, num_workers: int,
         verify_entry: Callable[[str], str | None], repair: bool = False) -> JobSummary:
    """Verify, or compute the entries of this process (resuming, optionally repairing).

    Args:
        spec: What the job computes and checks.
        images: The image list.
        shard: ``(I, N)`` or ``None``.
        overwrite: Replace a cache of other settings / recompute every entry.
        verify: Only run ``verify_entry`` on every entry (takes precedence unless
            ``repair``).
        progress: Show tqdm bars.
        num_workers: Image-decoding threads.
        verify_entry: Full check of one entry: name -> reason it is bad or ``None``
            (``'missing'`` when the file does not exist; a reason starting with
            :data:`IMAGE_UNREADABLE` when only the image could not be read).
        repair: Compute mode, but skip only entries that pass ``verify_entry``;
            bad ones are deleted first and computed again.

    Returns:
        JobSummary: The outcome.

    Raises:
        FileNotFoundError: Verify on a directory without cache (see
            :func:`_manifest_for_verify`).
        ManifestMismatchError: See :func:`prepare_cache_dir`.
        ManifestUnreadableError: See :func:`prepare_cache_dir`.
    """
    rank, world, _ = dist_rank_world()
    t0 = time.perf_counter()
    verify = verify and not repair
    mine = select_names(images.names, shard, rank, world)
    mode = 'verify' if verify else 'repair' if repair and not overwrite else 'compute'
    summary = JobSummary(spec.kind, spec.cache_dir, mode, total=len(mine), shard=shard,
                         rank=rank, world=world, suffix=spec.suffix)
    bar_kw = dict(disable=not progress, dynamic_ncols=True, unit='img',
                  position=rank if world > 1 else None)
    if verify:
        _manifest_for_verify(spec.cache_dir, spec.kind)
        for name in tqdm(mine, desc=f'verify {spec.kind}', **bar_kw):
            reason = verify_entry(name)
            if reason is not None:
                summary.failed[name] = reason
        summary.wall_s = time.perf_counter() - t0
        summary.bytes_on_disk, summary.entries_on_disk = cache_size_on_disk(spec.cache_dir,
                                                                            spec.suffix)
        return summary

    replaced = prepare_cache_dir(spec.cache_dir, spec.manifest, entry_suffix=spec.suffix,
                                 overwrite=overwrite, rank=rank)
    sole_writer = world == 1 and (shard is None or shard[1] == 1)
    n_tmp = clean_stale_tmp(spec.cache_dir, None if sole_writer else STALE_TMP_AGE_S)
    if n_tmp:
        _log(f'removed {n_tmp} stale temporary file(s) ({TMP_PREFIX}*) from {spec.cache_dir}')

    todo = []
    if overwrite or replaced:
        todo = list(mine)
    elif repair:
        for name in tqdm(mine, desc='verifying existing entries', leave=False, **bar_kw):
            reason = verify_entry(name)
            if reason is None:
                summary.skipped.append(name)
                continue
            todo.append(name)
            # An unreadable image says nothing about the entry: keep it (computing fails
            # on the image and reports it).
            if entry_is_bad(reason):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(spec.entry_path(name))
                summary.repaired[name] = reason
    else:
        for name in tqdm(mine, desc='checking existing entries', leave=False, **bar_kw):
            if spec.check(name, False) is None:
                summary.skipped.append(name)
            else:
                todo.append(name)
    _log(f'[{spec.kind}] {spec.cache_dir}: {len(mine)} images, {len(summary.skipped)} already '
         f'cached, {len(todo)} to compute'
         + (f' ({len(summary.repaired)} bad entries deleted)' if mode == 'repair' else ''))

    bar = tqdm(total=len(todo), desc=spec.kind, **bar_kw)
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        try:
            results = spec.compute(batch)
        except Exception as exc:  # a whole-batch failure (e.g. out of memory)
            results = [(n, f'{type(exc).__name__}: {exc}') for n, _ in batch]
        for name, err in results:
            if err is None:
                summary.done.append(name)
            else:
                summary.failed[name] = err
        bar.set_postfix(done=len(summary.done), failed=len(summary.failed), refresh=False)
        bar.update(len(batch))
        batch.clear()

    try:
        for name, image, err in _prefetch(todo, images, num_workers, max(4, 2 * spec.batch_size)):
            if err is not None:
                summary.failed[name] = err
                bar.update(1)
                continue
            batch.append((name, image))
            if len(batch) >= spec.batch_size:
                flush()
        flush()
    finally:
        bar.close()

    # An entry reported done must exist (guards against a concurrent --overwrite elsewhere).
    for name in list(summary.done):
        if not osp.isfile(spec.entry_path(name)):
            summary.done.remove(name)
            summary.failed[name] = 'entry vanished after writing (another run with --overwrite?)'
    summary.wall_s = time.perf_counter() - t0
    summary.bytes_on_disk, summary.entries_on_disk = cache_size_on_disk(spec.cache_dir,
                                                                        spec.suffix)
    return summary


# --------------------------------------------------------------------------------------
# SAM model


def _cfg_block(cfg: Mapping, name: str) -> dict:
    block = cfg.get(name)
    if block is None:
        raise KeyError(f'the config has no `{name}` block (see configs/_base_/sam/*.py)')
    return dict(block)


def job_device(sam_cfg: Mapping) -> torch.device:
    """Device of a job: ``sam.device`` ('auto' = CUDA when available); ``cuda:LOCAL_RANK``
    under torchrun when no index is given."""
    device = resolve_device(sam_cfg.get('device', 'auto'))
    _, world, local_rank = dist_rank_world()
    if device.type == 'cuda' and device.index is None and world > 1:
        device = torch.device('cuda', local_rank)
    return device


def build_job_sam(sam_cfg: Mapping, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Build SAM once for a job and describe it for the manifest.

    With ``checkpoint=None`` the weights are random: torch is seeded with
    :data:`RANDOM_INIT_SEED` first (so every rank/process builds the same model)
    and a loud warning is logged.

    Returns:
        tuple: The model (eval, on ``device``) and the identity dict
        (``model_type``, ``checkpoint_sha256``, ``random_init_seed``,
        ``autocast_dtype``, ``img_size``).
    """
    from .build import build_sam, checkpoint_sha256

    model_type = sam_cfg['model_type']
    ckpt = sam_cfg.get('checkpoint')
    if ckpt:
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'SAM checkpoint {ckpt} not found (sam.checkpoint in the '
                                    'config); download the official file or fix the path')
        sha = checkpoint_sha256(ckpt)
        sam = build_sam(model_type, ckpt, device=device)
        seed = None
    else:
        _log(f'!!! sam.checkpoint is None: building {model_type!r} with RANDOM weights (torch '
             f'seed {RANDOM_INIT_SEED}); its outputs are meaningless except for tests and the '
             'demo !!!', 'WARNING')
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            sam = build_sam(model_type, None, device=device)
        sha, seed = None, RANDOM_INIT_SEED
    sam.eval()
    ident = dict(model_type=model_type, checkpoint_sha256=sha, random_init_seed=seed,
                 autocast_dtype=sam_cfg.get('autocast_dtype'),
                 img_size=int(sam.image_encoder.img_size))
    return sam, ident


def _sam_info(sam_cfg: Mapping) -> dict:
    info = dict(checkpoint_path=sam_cfg.get('checkpoint'))
    if not sam_cfg.get('checkpoint'):
        info['warning'] = (f'RANDOM WEIGHTS: sam.checkpoint was None, model built after '
                           f'torch.manual_seed({RANDOM_INIT_SEED})')
    return info


# --------------------------------------------------------------------------------------
# SE map job


def _provider_cfg(se_cfg: Mapping, provider: str | None) -> dict:
    """The provider config, with ``provider`` (a registry name) overriding the type.

    When the type changes, the old parameters are kept only where the new
    provider takes them: named in its constructor, or both constructors take
    ``**kwargs`` (e.g. ``sam_amg`` <-> ``sam_amg_reference``). Dropped ones are logged.
    """
    from s2c.registry import SE_PROVIDERS

    pcfg = dict(se_cfg['provider'])
    if provider is None or provider == pcfg.get('type'):
        return pcfg
    new_cls = SE_PROVIDERS.get(provider)
    if new_cls is None:
        raise KeyError(f'unknown SE provider {provider!r}; registered: '
                       f'{sorted(SE_PROVIDERS.module_dict)}')
    old_cls = SE_PROVIDERS.get(pcfg.get('type')) if pcfg.get('type') else None

    def var_kw(cls: Any) -> bool:
        return cls is not None and any(p.kind is p.VAR_KEYWORD
                                       for p in inspect.signature(cls).parameters.values())

    named = set(inspect.signature(new_cls).parameters)
    share_kwargs = var_kw(new_cls) and var_kw(old_cls)
    params = {k: v for k, v in pcfg.items() if k != 'type'}
    kept = {k: v for k, v in params.items() if k in named or share_kwargs}
    dropped = sorted(set(params) - set(kept))
    if dropped:
        _log(f'--provider {provider}: dropping parameters of {pcfg.get("type")!r} that '
             f'{provider!r} does not take: {dropped}')
    return dict(type=provider, **kept)


def run_se_map_job(cfg: Mapping, *, provider: str | None = None, split: str | None = None,
                   out: str | None = None, shard: str | tuple[int, int] | None = None,
                   overwrite: bool = False, verify: bool = False, repair: bool = False,
                   names: Sequence[str] | None = None, progress: bool = True,
                   num_workers: int = 2) -> JobSummary:
    """Compute (or verify) the SE map cache of a dataset.

    Args:
        cfg: Config with ``se_maps``, ``sam`` (for SAM-based providers) and
            ``train_dataloader.dataset``.
        provider: SE provider registry name overriding ``se_maps.provider.type``.
        split: Split name or list path (see :func:`resolve_image_list`).
        out: Cache directory overriding the config.
        shard: ``'I/N'`` or ``(I, N)``.
        overwrite: Replace a cache made with other settings (or with an unreadable
            manifest) / recompute entries.
        verify: Only check entries (every one decoded: uint16 2-D, size of its image).
        repair: Compute, but run the full check of ``verify`` on existing entries
            first, delete the bad ones and compute them (and the missing ones)
            again. Takes precedence over ``verify``.
        names: Explicit image ids instead of a split.
        progress: Show tqdm bars.
        num_workers: Image-decoding threads (0: decode inline).

    Returns:
        JobSummary: ``summary.ok`` is False when an image failed (or an entry is bad).

    Raises:
        ManifestMismatchError: When ``out`` holds a cache of other settings and
            ``overwrite`` is False.
        ManifestUnreadableError: A ``ValueError``: the manifest in ``out`` is
            unreadable and ``overwrite`` is False (also with ``verify``).
        FileNotFoundError: With ``verify``, when the cache directory or its
            manifest does not exist.
    """
    from .se_map import load_se_map, save_se_map

    shard_t = parse_shard(shard)
    se_cfg = _cfg_block(cfg, 'se_maps')
    pcfg = _provider_cfg(se_cfg, provider)
    se_cfg['provider'] = pcfg
    overlap = se_cfg.get('overlap', 'smallest_on_top')
    uses_sam = layout.provider_uses_sam(pcfg['type'])
    sam_cfg = _cfg_block(cfg, 'sam') if uses_sam else None
    images = resolve_image_list(cfg, split, names)
    cache_dir = out or layout.se_map_cache_dir(images.data_root, se_cfg, sam_cfg)

    def path(name: str) -> str:
        return layout.se_map_path(cache_dir, name)

    def quick_check(name: str, full: bool) -> str | None:
        p = path(name)
        if not osp.isfile(p):
            return MISSING
        try:
            from PIL import Image
            with Image.open(p) as img:
                if img.format != 'PNG' or img.mode not in ('I;16', 'I;16B', 'I;16L', 'I'):
                    return f'not a 16-bit PNG ({img.format}, mode {img.mode})'
                png_hw = (img.height, img.width)
        except Exception as exc:
            return f'unreadable: {exc}'
        # The image sizes are not read anywhere else before this check; reading the image
        # header (no decoding) costs about as much as the PNG header above (~30 us per
        # VOC JPEG, a fraction of a second for a 10k-image list), so do it. An image that
        # cannot be read is not judged here: computing its map would fail anyway.
        try:
            hw = image_size(images.image_path(name))
        except Exception:
            return None
        if png_hw != hw:
            return f'size {png_hw} differs from its image {hw}'
        return None

    def verify_entry(name: str) -> str | None:
        p = path(name)
        if not osp.isfile(p):
            return MISSING
        try:
            se = load_se_map(p)
        except Exception as exc:
            return f'unreadable: {exc}'
        if se.dtype != np.uint16 or se.ndim != 2:
            return f'expected a 2-D uint16 map, got {se.dtype} {se.shape}'
        try:
            hw = image_size(images.image_path(name))
        except Exception as exc:
            return f'{IMAGE_UNREADABLE} ({exc})'
        if tuple(se.shape) != hw:
            return f'size {se.shape} differs from its image {hw}'
        return None

    if verify and not repair:
        spec = _JobSpec(SE_MAP_KIND, cache_dir, layout.SE_MAP_SUFFIX, {}, path, quick_check,
                        lambda b: [])
        return _run(spec, images, shard=shard_t, overwrite=False, verify=True,
                    progress=progress, num_workers=num_workers, verify_entry=verify_entry)

    from s2c.registry import SE_PROVIDERS

    build_cfg = dict(pcfg, overlap=overlap)
    key_sam = None
    if uses_sam:
        sam, key_sam = build_job_sam(sam_cfg, job_device(sam_cfg))
        build_cfg.update(sam=sam, autocast_dtype=sam_cfg.get('autocast_dtype'))
    se_provider = SE_PROVIDERS.build(build_cfg)
    # provider.params: every parameter that changes the output, defaults filled in; the
    # checkpoint path is informational (its SHA-256 is the identity).
    params = {k: v for k, v in se_provider.params.items() if k not in ('provider', 'checkpoint')}
    key = dict(provider=dict(type=pcfg['type'], **params), overlap=overlap, sam=key_sam,
               entry=dict(format='png', dtype='uint16', background=0))
    info = dict(images=images.list_file, data_root=images.data_root,
                **(_sam_info(sam_cfg) if uses_sam else {}))
    manifest = make_manifest(SE_MAP_KIND, SE_MAP_FORMAT_VERSION, key, info)

    def compute(batch: list[tuple[str, np.ndarray]]) -> list[tuple[str, str | None]]:
        results = []
        for name, image in batch:
            try:
                se = np.asarray(se_provider(image))
                if se.shape != image.shape[:2]:
                    raise ValueError(f'provider returned shape {se.shape} for an image of '
                                     f'{image.shape[:2]}')
                save_se_map(path(name), se)  # atomic (temp file + rename)
                results.append((name, None))
            except Exception as exc:
                results.append((name, f'{type(exc).__name__}: {exc}'))
        return results

    spec = _JobSpec(SE_MAP_KIND, cache_dir, layout.SE_MAP_SUFFIX, manifest, path, quick_check,
                    compute)
    return _run(spec, images, shard=shard_t, overwrite=overwrite, verify=False,
                progress=progress, num_workers=num_workers, verify_entry=verify_entry,
                repair=repair)


# --------------------------------------------------------------------------------------
# embedding job


def embedding_record_shapes(sam: torch.nn.Module,
                            early_block: int | None) -> tuple[list[int], list[int] | None]:
    """``(256, h', w')`` and ``(h', w', C)`` (or ``None``) of a model's cache records."""
    enc = sam.image_encoder
    grid = int(enc.img_size) // int(enc.patch_embed.proj.stride[0])
    out_ch = int(enc.neck[0].out_channels)
    emb = [out_ch, grid, grid]
    early = None if early_block is None else [grid, grid, int(enc.patch_embed.proj.out_channels)]
    return emb, early


def run_embedding_job(cfg: Mapping, *, split: str | None = None, out: str | None = None,
                      shard: str | tuple[int, int] | None = None, overwrite: bool = False,
                      verify: bool = False, repair: bool = False,
                      names: Sequence[str] | None = None, batch_size: int = 1,
                      progress: bool = True, num_workers: int = 2) -> JobSummary:
    """Compute (or verify) the SAM embedding cache of a dataset.

    Args:
        cfg: Config with ``sam``, ``sam_embeddings`` and ``train_dataloader.dataset``.
        split: Split name or list path (see :func:`resolve_image_list`).
        out: Cache directory overriding the config.
        shard: ``'I/N'`` or ``(I, N)``.
        overwrite: Replace a cache made with other settings (or with an unreadable
            manifest) / recompute entries.
        verify: Only check entries (header, size, CRC-32, sizes vs the image).
        repair: Compute, but run the full check of ``verify`` on existing entries
            first, delete the bad ones and compute them (and the missing ones)
            again. Takes precedence over ``verify``.
        names: Explicit image ids instead of a split.
        batch_size: Images per encoder call.
        progress: Show tqdm bars.
        num_workers: Image-decoding threads (0: decode inline).

    Returns:
        JobSummary: ``summary.ok`` is False when an image failed (or an entry is bad).

    Raises:
        ManifestMismatchError: When the directory holds a cache of another model or
            other parameters and ``overwrite`` is False.
        ManifestUnreadableError: A ``ValueError``: the manifest is unreadable and
            ``overwrite`` is False (also with ``verify``).
        FileNotFoundError: With ``verify``, when the cache directory or its
            manifest does not exist.
    """
    from .build import sam_autocast
    from .encoder import early_block_index, encode_images
    from .transforms import get_preprocess_shape

    shard_t = parse_shard(shard)
    sam_cfg = _cfg_block(cfg, 'sam')
    emb_cfg = _cfg_block(cfg, 'sam_embeddings')
    images = resolve_image_list(cfg, split, names)
    cache_dir = out or layout.embedding_cache_dir(images.data_root, sam_cfg, emb_cfg)

    def path(name: str) -> str:
        return layout.embedding_path(cache_dir, name)

    def make_verify_entry(key: Mapping) -> Callable[[str], str | None]:
        """The full check of one entry against a manifest key (the one in the cache)."""
        expected = None
        if 'embedding_shape' in key:
            expected = entry_dtype(key['embedding_shape'], key.get('early_shape'))
        img_size = key.get('img_size')

        def verify_entry(name: str) -> str | None:
            reason = check_entry(path(name), expected, full=True)
            if reason is not None:
                return reason
            rec = np.load(path(name), mmap_mode='r')
            try:
                hw = image_size(images.image_path(name))
            except Exception as exc:
                return f'{IMAGE_UNREADABLE} ({exc})'
            org = tuple(int(v) for v in rec['original_size'][0])
            if org != hw:
                return f'original_size {org} differs from its image {hw}'
            if img_size:
                want = get_preprocess_shape(hw[0], hw[1], int(img_size))
                got = tuple(int(v) for v in rec['input_size'][0])
                if got != want:
                    return f'input_size {got} differs from SAM resize of {hw} ({want})'
            return None

        return verify_entry

    if verify and not repair:
        old = _manifest_for_verify(cache_dir, EMBEDDING_KIND)
        verify_entry = make_verify_entry(old.get('key') or {})
        spec = _JobSpec(EMBEDDING_KIND, cache_dir, layout.EMBEDDING_SUFFIX, {}, path,
                        lambda n, f: None, lambda b: [])
        return _run(spec, images, shard=shard_t, overwrite=False, verify=True,
                    progress=progress, num_workers=num_workers, verify_entry=verify_entry)

    device = job_device(sam_cfg)
    autocast = sam_cfg.get('autocast_dtype')
    sam_autocast(device, autocast)  # fail early on bf16 without CUDA / fp16
    sam, ident = build_job_sam(sam_cfg, device)
    early = bool(emb_cfg.get('early_features', False))
    early_block = early_block_index(sam, sam_cfg['model_type']) if early else None
    emb_shape, early_shape = embedding_record_shapes(sam, early_block)
    key = dict(ident, early_features=early, early_block=early_block, embedding_shape=emb_shape,
               early_shape=early_shape, dtype='float16')
    manifest = make_manifest(EMBEDDING_KIND, EMBEDDING_FORMAT_VERSION, key,
                             dict(images=images.list_file, data_root=images.data_root,
                                  bytes_per_entry=entry_dtype(emb_shape, early_shape).itemsize,
                                  **_sam_info(sam_cfg)))
    expected = entry_dtype(emb_shape, early_shape)

    def compute(batch: list[tuple[str, np.ndarray]]) -> list[tuple[str, str | None]]:
        enc = encode_images(sam, [img for _, img in batch], early_block=early_block,
                            autocast_dtype=autocast)
        emb = enc.embeddings.cpu().numpy()
        ear = enc.early.cpu().numpy() if enc.early is not None else None
        results = []
        for i, (name, _) in enumerate(batch):
            try:
                save_entry(path(name), emb[i], enc.input_sizes[i], enc.original_sizes[i],
                           None if ear is None else ear[i])
                results.append((name, None))
            except Exception as exc:
                results.append((name, f'{type(exc).__name__}: {exc}'))
        return results

    spec = _JobSpec(EMBEDDING_KIND, cache_dir, layout.EMBEDDING_SUFFIX, manifest, path,
                    lambda n, full: check_entry(path(n), expected, full=full), compute,
                    batch_size=max(1, int(batch_size)))
    # repair runs after prepare_cache_dir, so the manifest on disk has this run's key
    return _run(spec, images, shard=shard_t, overwrite=overwrite, verify=False,
                progress=progress, num_workers=num_workers,
                verify_entry=make_verify_entry(key), repair=repair)


# --------------------------------------------------------------------------------------
# CLI helpers shared by the two tools


def add_job_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags both cache tools take."""
    from mmengine.config import DictAction

    parser.add_argument('config', help='config file (with sam / se_maps / sam_embeddings blocks)')
    parser.add_argument('--split', help='split NAME -> <data_root>/ImageSets/Segmentation/NAME.txt '
                        '(default: train_dataloader.dataset.ann_file), or a .txt path')
    parser.add_argument('--out', help='cache directory (default from the config: '
                        '<data_root>/{se_maps,sam_embeddings}/<tag>)')
    parser.add_argument('--shard', help='I/N: process images k with k %% N == I (torchrun ranks '
                        'split it further automatically)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a cache made with other settings and recompute entries')
    parser.add_argument('--verify', action='store_true',
                        help='only check every entry in full; exit 1 when any is bad or missing '
                        '(the output ends with the remedy)')
    parser.add_argument('--repair', action='store_true',
                        help='compute like a resumed run, but check existing entries in full '
                        'first (as --verify) and delete and recompute the bad ones')
    parser.add_argument('--workers', type=int, default=2, help='image-decoding threads')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    parser.add_argument('--data-root', help='set data_root of every dataset of the config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. sam.device=cpu')
    return parser


def finish(summary: JobSummary) -> int:
    """Print the summary and return the exit status (0 ok, 1 failures / bad entries)."""
    print(summary.format(), flush=True)
    return 0 if summary.ok else 1


def run_cli(job: Callable[..., JobSummary], cfg: Any, args: argparse.Namespace,
            **extra: Any) -> int:
    """Run ``job`` with the shared flags; print the summary; return the exit status.

    A :class:`ManifestMismatchError`, an unreadable manifest, a missing cache
    under ``--verify`` or a bad argument is printed as an error (exit status 2)
    instead of a traceback.
    """
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if getattr(args, 'data_root', None):
        from s2c.apis.config import set_data_root
        set_data_root(cfg, args.data_root)
    try:
        summary = job(cfg, split=args.split, out=args.out, shard=args.shard,
                      overwrite=args.overwrite, verify=args.verify,
                      repair=args.repair, progress=not args.no_progress,
                      num_workers=args.workers, **extra)
    except (ManifestMismatchError, ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f'error: {msg}', file=sys.stderr, flush=True)
        return 2
    return finish(summary)


def write_synthetic_embedding_cache(cache_dir: str, names: Sequence[str], model_type: str,
                                    original_size: tuple[int, int], seed: int = 0,
                                    source: str = 'synthetic') -> None:
    """Random-valued embedding records plus the job's manifest (benchmarks only).

    Decoding cost does not depend on the values, so benchmarks of CPM and SAM
    refinement use this instead of running the image encoder. The manifest
    says loudly that the embeddings are random.

    Args:
        cache_dir: Output folder.
        names: Image ids.
        model_type: SAM model type whose embedding shape to use.
        original_size: ``(H, W)`` recorded for every image.
        seed: Random seed.
        source: Who wrote it (goes into the manifest).
    """
    from .build import build_sam
    from .transforms import get_preprocess_shape

    sam = build_sam(model_type, None, device='cpu')
    img_size = int(sam.image_encoder.img_size)
    emb_shape, early_shape = embedding_record_shapes(sam, None)
    del sam
    key = dict(model_type=model_type, checkpoint_sha256=None, random_init_seed=seed,
               autocast_dtype=None, img_size=img_size, early_features=False, early_block=None,
               embedding_shape=emb_shape, early_shape=early_shape, dtype='float16')
    manifest = make_manifest(EMBEDDING_KIND, EMBEDDING_FORMAT_VERSION, key, dict(
        images=source, bytes_per_entry=entry_dtype(emb_shape, early_shape).itemsize,
        warning=f'RANDOM EMBEDDINGS written by {source}'))
    os.makedirs(cache_dir, exist_ok=True)
    write_manifest(cache_dir, manifest)
    input_size = get_preprocess_shape(original_size[0], original_size[1], img_size)
    rng = np.random.default_rng(seed)
    for name in names:
        emb = rng.standard_normal(emb_shape, dtype=np.float32) * 0.5
        save_entry(osp.join(cache_dir, f'{name}.npy'), emb, input_size, original_size)
