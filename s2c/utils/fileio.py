"""Atomic writes: every output of s2c is written to a temporary name and renamed.

Every cache entry, CAM file, pseudo-label, manifest and checkpoint record is
written to a temporary name in the destination folder and renamed into place
(``os.replace`` is atomic on POSIX), so an interrupted job never leaves a
half-written file under the final name; a rerun cleans the leftovers
(:func:`clean_stale_tmp`).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import os.path as osp
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .job_summary import format_bytes

#: Prefix of the temporary files (hidden, skipped by every entry listing).
TMP_PREFIX = '.tmp-'


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The temporary file lives in the same directory (same file system), starts
    with ``.tmp-`` and keeps the suffix of ``path`` (so libraries that infer
    the format from the extension still work). When the body raises, the
    temporary file is removed and ``path`` is left untouched.

    Args:
        path: Final file path.

    Yields:
        str: Temporary path to write to.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = osp.basename(path)
    suffix = ''.join(base.partition('.')[1:]) if '.' in base else ''
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + base + '.', suffix=suffix, dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give outputs normal permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise no_space_error(directory, path) from e
        raise


def atomic_save_npz(path: str, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` file atomically.

    Args:
        path: Destination, ending in ``.npz``.
        **arrays: Arrays to store under their keyword names.
    """
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        np.savez(f, **arrays)


def atomic_save_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN kept as ``NaN``)."""
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        json.dump(data, f, indent=2)


def clean_stale_tmp(folder: str, max_age_s: float | None = None) -> int:
    """Delete ``.tmp-*`` files left in ``folder`` by killed runs.

    Args:
        folder: The folder.
        max_age_s: Only delete files not modified for this long (``None``: all;
            use an age when other writers may be running, e.g. other shards).

    Returns:
        int: Number of files deleted.
    """
    if not osp.isdir(folder):
        return 0
    now = time.time()
    removed = 0
    for entry in os.scandir(folder):
        if not entry.name.startswith(TMP_PREFIX) or not entry.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if max_age_s is None or now - entry.stat().st_mtime > max_age_s:
                os.remove(entry.path)
                removed += 1
    return removed


def no_space_error(directory: str, path: str) -> OSError:
    """The error for a write that ran out of disk: says so in those words, with the folder
    and its free space (nothing partial was kept under ``path``)."""
    free = shutil.disk_usage(directory).free if osp.isdir(directory) else 0
    return OSError(errno.ENOSPC, f'no space left on device in {directory} '
                                 f'({format_bytes(free)} free) while writing '
                                 f'{osp.basename(path)}: nothing partial was kept; free space '
                                 'or write elsewhere, then rerun (finished entries are kept)')


class InsufficientDiskSpaceError(OSError):
    """A job would not fit on the disk of its output folder (nothing was written)."""


def check_free_space(folder: str, need_bytes: int, what: str, margin: float = 1.05) -> int:
    """Refuse a job whose output would not fit in ``folder``'s file system.

    Args:
        folder: Output folder (may not exist yet: its nearest existing parent is measured).
        need_bytes: Expected bytes the job writes.
        what: What is written, for the message (e.g. ``'82,081 embeddings'``).
        margin: Required free space = ``need_bytes * margin``.

    Returns:
        int: Free bytes.

    Raises:
        InsufficientDiskSpaceError: Naming the folder, the need, the free space and the fix.
    """
    probe = osp.abspath(folder)
    while not osp.isdir(probe) and osp.dirname(probe) != probe:
        probe = osp.dirname(probe)
    free = shutil.disk_usage(probe).free
    if need_bytes * margin > free:
        raise InsufficientDiskSpaceError(
            f'{what} need about {format_bytes(need_bytes)} in {folder}, but only '
            f'{format_bytes(free)} is free there: free space, write the cache to a larger '
            "disk (--out, or the config's folder), or split the job over machines with "
            '--shard I/N')
    return free
