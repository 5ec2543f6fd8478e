"""Manifests: what made the files of a folder (SAM caches, CAM folders, pseudo-label folders).

A manifest is one JSON file in the folder::

    {"kind": "se_maps", "format_version": 1, "key": {...}, "info": {...}}

``key`` holds everything that changes the files' content (model, checkpoint
SHA-256, parameters, record shapes); ``info`` is informational (date,
versions, paths). A job *claims* a folder before writing into it
(:func:`claim_folder`): an equal manifest means resume, a different one is
refused (:class:`ManifestMismatchError`, listing what differs) unless
``overwrite``, and an unreadable one is always an error that names the file
and the fix (:class:`ManifestUnreadableError`). Where the caller names its
entry suffix (caches, CAM folders), entries without a manifest (of unknown
origin) are refused alike. Manifests are written
atomically (temp file + rename).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import os.path as osp
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.logging import print_log

from s2c import __version__

from .fileio import atomic_write
from .hashing import jsonable, short_hash

#: File name of the manifest of a SAM cache folder.
MANIFEST_NAME = 'manifest.json'


class ManifestUnreadableError(ValueError):
    """A manifest exists but is not a readable JSON object (e.g. truncated)."""


class ManifestMismatchError(ValueError):
    """The folder holds files made with other settings (or of unknown origin)."""


def make_manifest(kind: str, format_version: int, key: Mapping,
                  info: Mapping | None = None) -> dict:
    """Assemble a manifest (JSON-plain). ``info`` gets ``created``, versions and host.

    Args:
        kind: What the folder holds (``'se_maps'``, ``'sam_embeddings'``, ``'cams'``,
            ``'pseudo_labels'``).
        format_version: Version of the entry format.
        key: Everything that changes the content.
        info: Informational values.
    """
    info = dict(info or {})
    info.setdefault('created', datetime.datetime.now().isoformat(timespec='seconds'))
    info.setdefault('s2c_version', __version__)
    info.setdefault('torch_version', torch.__version__)
    info.setdefault('host', socket.gethostname())
    plain = json.loads(json.dumps(jsonable(dict(kind=kind, format_version=format_version,
                                                key=dict(key), info=info)), default=str))
    return plain


def manifest_id(manifest: Mapping) -> str:
    """12 hex digits identifying ``kind``, ``format_version`` and ``key`` (not ``info``)."""
    return short_hash({k: manifest.get(k) for k in ('kind', 'format_version', 'key')}, 12)


def read_manifest(path: str) -> dict | None:
    """Read a manifest file.

    Returns:
        dict | None: The manifest, or ``None`` when the file does not exist.

    Raises:
        ManifestUnreadableError: The file exists but cannot be read or is not a
            JSON object (the message names it and the way out, ``--overwrite``).
    """
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestUnreadableError(
            f'manifest {path} is unreadable ({exc}); rerun with --overwrite (every entry is '
            'recomputed) or delete the folder') from exc
    if not isinstance(manifest, dict):
        raise ManifestUnreadableError(
            f'manifest {path} is not a JSON object; rerun with --overwrite (every entry is '
            'recomputed) or delete the folder')
    return manifest


def write_manifest(path: str, manifest: Mapping) -> None:
    """Write a manifest atomically (indented, keys sorted)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write('\n')


def _flatten(obj: Any, prefix: str = '') -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}.{k}' if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: obj}


def manifest_differences(old: Mapping, new: Mapping) -> list[str]:
    """Differences of ``kind``, ``format_version`` and ``key`` (``info`` is ignored).

    Returns:
        list[str]: Lines ``'key.path: folder has X, this run has Y'``; empty when equal.
    """
    def flat(m: Mapping) -> dict[str, Any]:
        return _flatten({k: m.get(k) for k in ('kind', 'format_version', 'key')})

    a, b = flat(old), flat(new)
    return [f'{k}: folder has {a.get(k, "<absent>")!r}, this run has {b.get(k, "<absent>")!r}'
            for k in sorted(set(a) | set(b)) if a.get(k, '<absent>') != b.get(k, '<absent>')]


def entry_files(folder: str, suffix: str) -> list[os.DirEntry]:
    """Entry files of a folder: names ending in ``suffix``, not hidden (no ``.tmp-*``)."""
    if not osp.isdir(folder):
        return []
    return [e for e in os.scandir(folder)
            if e.name.endswith(suffix) and not e.name.startswith('.') and e.is_file()]


def _mismatch(folder: str, what: str, diffs: Sequence[str], deletes: bool) -> str:
    return (f'{folder} already holds {what} made with other settings:\n  - '
            + '\n  - '.join(diffs)
            + '\nRerun with --overwrite (overwrite=True) to replace them'
            + (' (the old entries are deleted)' if deletes else '')
            + ', or write elsewhere with --out DIR.')


def _unknown(folder: str, suffix: str, filename: str) -> str:
    return (f'{folder} holds {suffix} file(s) of unknown origin (no {filename}); rerun with '
            '--overwrite (overwrite=True) to recompute them, or write elsewhere with --out DIR.')


def claim_folder(folder: str, manifest: Mapping, *, filename: str = MANIFEST_NAME,
                 what: str = 'files', entry_suffix: str | None = None,
                 overwrite: bool = False, delete_on_replace: bool = False, rank: int = 0,
                 timeout_s: float = 600.0, poll_s: float = 0.2) -> bool:
    """Check or write the manifest of ``folder`` before a job writes entries into it.

    Rank 0 writes the manifest when there is none (and no entry of unknown
    origin). An equal manifest means resume. A different or unreadable one
    raises, or with ``overwrite`` is replaced (the old entries deleted when
    ``delete_on_replace``). Other ranks (torchrun) wait up to ``timeout_s`` for
    rank 0's manifest and raise at once on a mismatching or unreadable one
    without ``overwrite``.

    Args:
        folder: The folder (created when missing).
        manifest: This run's manifest (:func:`make_manifest`).
        filename: Manifest file name inside ``folder``.
        what: What the folder holds, for messages (``'a cache'``, ``'CAMs'``).
        entry_suffix: Suffix of entry files (``.png``, ``.npy``, ``.npz``): entries
            without a manifest are refused; with ``delete_on_replace`` they are
            deleted on replacement.
        overwrite: Accept and replace a manifest of other settings.
        delete_on_replace: Delete the entries when the manifest is replaced.
        rank: This process's rank (only rank 0 writes).
        timeout_s: How long other ranks wait for rank 0's manifest.
        poll_s: Poll interval of the wait.

    Returns:
        bool: ``True`` when a manifest of other settings, an unreadable one, or
        entries of unknown origin were replaced (``overwrite``): every entry must
        be recomputed.

    Raises:
        ManifestMismatchError: Other settings, or entries of unknown origin,
            without ``overwrite`` (lists the differences and the two ways out).
        ManifestUnreadableError: An unreadable manifest without ``overwrite``.
        TimeoutError: When a non-zero rank waited in vain.
    """
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, filename)
    deletes = bool(delete_on_replace and entry_suffix)
    if rank != 0:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                old = read_manifest(path)
            except ManifestUnreadableError:
                if not overwrite:
                    raise
                old = None  # rank 0 replaces it
            if old is not None:
                diffs = manifest_differences(old, manifest)
                if not diffs:
                    return False
                if not overwrite:
                    raise ManifestMismatchError(_mismatch(folder, what, diffs, deletes))
            elif not overwrite and entry_suffix and entry_files(folder, entry_suffix):
                # rank 0 writes the manifest before any entry: these are of unknown origin
                raise ManifestMismatchError(_unknown(folder, entry_suffix, filename))
            if time.monotonic() > deadline:
                raise TimeoutError(f'rank {rank}: no matching manifest appeared in {folder} '
                                   f'within {timeout_s:.0f} s (did rank 0 fail?)')
            time.sleep(poll_s)
    try:
        old = read_manifest(path)
    except ManifestUnreadableError as exc:
        if not overwrite:
            raise
        diffs = [f'the old manifest is unreadable ({exc.__cause__ or "not a JSON object"})']
    else:
        if old is None:
            unknown = entry_files(folder, entry_suffix) if entry_suffix else []
            if not unknown:
                write_manifest(path, manifest)
                return False
            if not overwrite:
                raise ManifestMismatchError(_unknown(folder, entry_suffix, filename))
            diffs = [f'{len(unknown)} {entry_suffix} file(s) of unknown origin']
        else:
            diffs = manifest_differences(old, manifest)
            if not diffs:
                return False
            if not overwrite:
                raise ManifestMismatchError(_mismatch(folder, what, diffs, deletes))
    print_log(f'--overwrite: replacing {what} in {folder} ({"; ".join(diffs)})'
              + ('; deleting its entries' if deletes else ''), logger='current',
              level=logging.WARNING)
    if deletes:
        for entry in entry_files(folder, entry_suffix):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
    write_manifest(path, manifest)
    return True
