"""CPU worker pools for per-image jobs (pseudo-labels, dataset conversion)."""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.pool
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2


def pool_context() -> mp.context.BaseContext:
    """``fork`` where available and CUDA is not initialised (workers start at once and
    share the parent's memory, e.g. a loaded annotation file), else ``spawn`` (each worker
    imports s2c first: a few seconds)."""
    torch = sys.modules.get('torch')
    cuda_live = torch is not None and torch.cuda.is_initialized()
    if 'fork' in mp.get_all_start_methods() and not cuda_live:
        return mp.get_context('fork')
    return mp.get_context('spawn')


@contextlib.contextmanager
def single_threaded_opencv() -> Iterator[None]:
    """Run the body with OpenCV's thread pool at one thread, then restore the setting.

    Forking while OpenCV's worker threads exist copies their locks in whatever state they
    are in; a child that then reconfigures the pool can block forever (seen as a hang in
    ``pthread_cond_destroy``). Shrinking the pool in the parent first (a clean join of its
    threads) gives every forked worker a consistent, single-threaded one.
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def init_worker_threads() -> None:
    """In a worker: one OpenCV thread (a no-op in a worker forked by :func:`worker_pool`,
    which must not touch the inherited pool; needed in a spawned one)."""
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


@contextlib.contextmanager
def worker_pool(workers: int, initializer: Callable[..., None] | None = None,
                initargs: Sequence[Any] = ()) -> Iterator[mp.pool.Pool]:
    """A process pool safe to fork from a process that has used OpenCV and threads.

    Create it before any progress-bar monitor thread starts. Each worker runs
    :func:`init_worker_threads`, then ``initializer(*initargs)``.

    Args:
        workers: Number of processes.
        initializer: Called once in each worker.
        initargs: Its arguments (pickled for ``spawn``; inherited for ``fork``).

    Yields:
        multiprocessing.pool.Pool: The pool (terminated on exit).
    """
    with single_threaded_opencv(), pool_context().Pool(
            workers, initializer=_init, initargs=(initializer, tuple(initargs))) as pool:
        yield pool


def _init(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    init_worker_threads()
    if initializer is not None:
        initializer(*initargs)
