"""Advisory per-folder locks between jobs that write the same output folder."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
from collections.abc import Iterator

try:  # POSIX; elsewhere the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

#: Lock file inside a locked folder (never an entry: no entry suffix, no temp prefix).
LOCK_NAME = '.s2c-writers.lock'


class FolderBusyError(RuntimeError):
    """Another job holds a conflicting lock on the folder."""


@contextlib.contextmanager
def folder_lock(folder: str, exclusive: bool, what: str = 'this folder') -> Iterator[None]:
    """Hold an advisory lock on ``folder`` while the body runs.

    A job that is the folder's only writer (it may delete every temporary file it finds)
    takes it ``exclusive``; jobs that share the folder by design (torchrun ranks, shards)
    take it shared. A conflicting holder makes the call fail at once instead of waiting.

    Args:
        folder: The output folder (created if needed).
        exclusive: Exclusive (sole writer) or shared.
        what: What the folder holds, for the message.

    Raises:
        FolderBusyError: Naming the folder and what to do.
    """
    os.makedirs(folder, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = osp.join(folder, LOCK_NAME)
    with open(path, 'a') as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f'another job is writing {what} in {folder} (lock {path}); wait for it to '
                'finish, or split the work between jobs with --shard I/N') from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
