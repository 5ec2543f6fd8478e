"""Atomic writes and content hashes for caches.

Every cache file of s2c is written to a temporary name in the destination
folder and renamed into place (``os.replace`` is atomic on POSIX), so an
interrupted job never leaves a half-written entry under the final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import os.path as osp
import tempfile
from collections.abc import Iterator

import numpy as np

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
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give caches normal permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_save_npz(path: str, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` file atomically.

    Args:
        path: Destination, ending in ``.npz``.
        **arrays: Arrays to store under their keyword names.
    """
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        np.savez(f, **arrays)


def file_sha256(path: str, chunk_size: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in 4 MiB chunks.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()
