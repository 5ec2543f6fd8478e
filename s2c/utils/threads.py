"""Torch's intra-op thread count, set deliberately by every entry point.

PyTorch starts one intra-op thread per core it sees. Several processes on one machine
(torchrun ranks, data-loader workers, a second job) then each start as many threads as
there are cores and compete for them; on a loaded 2-core machine two torch threads per
process ran 3.5-8x slower than one. So every tool and :func:`s2c.apis.train` choose the
count, in this order:

1. an explicit value (the config's ``env_cfg.num_threads`` for training; a tool's
   ``--threads`` where it has one);
2. the environment variable ``S2C_NUM_THREADS``;
3. the default: the cores available to this process (``os.sched_getaffinity``, so
   ``taskset`` / container CPU sets count) divided among the processes of this node
   (torchrun's ``LOCAL_WORLD_SIZE``), less one core per data-loader worker of this
   process, at least 1.
"""
from __future__ import annotations

import os

import torch

#: Environment variable that overrides the default thread count.
THREADS_ENV = 'S2C_NUM_THREADS'


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity set; ``os.cpu_count()`` elsewhere)."""
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_num_threads(num_workers: int = 0, processes: int | None = None) -> int:
    """The default intra-op thread count of one process.

    Args:
        num_workers: Data-loader worker processes of this process (each is given a core).
        processes: Processes sharing the node (default: ``LOCAL_WORLD_SIZE``, else 1).

    Returns:
        int: ``max(1, cores // processes - num_workers)``.
    """
    if processes is None:
        processes = int(os.environ.get('LOCAL_WORLD_SIZE', '1') or 1)
    return max(1, available_cores() // max(1, processes) - max(0, int(num_workers)))


def resolve_num_threads(num_threads: int | None = None, num_workers: int = 0,
                        processes: int | None = None) -> int:
    """The thread count :func:`set_num_threads` would set (see the module docstring).

    Args:
        num_threads: Explicit count (config / command line), or None.
        num_workers: Data-loader workers of this process (only for the default).
        processes: Processes sharing the node (only for the default; see
            :func:`default_num_threads`).

    Returns:
        int: The count, >= 1.

    Raises:
        ValueError: A count below 1, or ``S2C_NUM_THREADS`` that is not a positive integer.
    """
    if num_threads is None and os.environ.get(THREADS_ENV):
        value = os.environ[THREADS_ENV]
        if not value.strip().isdigit():
            raise ValueError(f'{THREADS_ENV}={value!r} is not a positive integer; unset it or '
                             'give a thread count such as 4')
        num_threads = int(value)
    if num_threads is None:
        num_threads = default_num_threads(num_workers, processes)
    if int(num_threads) < 1:
        raise ValueError(f'the torch thread count must be >= 1, got {num_threads}')
    return int(num_threads)


def set_num_threads(num_threads: int | None = None, num_workers: int = 0) -> int:
    """Set torch's intra-op thread count (see the module docstring for the order).

    Args:
        num_threads: Explicit count (config / command line), or None.
        num_workers: Data-loader workers of this process (only for the default).

    Returns:
        int: The count now in effect.

    Raises:
        ValueError: A count below 1, or ``S2C_NUM_THREADS`` that is not a positive integer.
    """
    num_threads = resolve_num_threads(num_threads, num_workers)
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads


__all__ = ['THREADS_ENV', 'available_cores', 'default_num_threads', 'resolve_num_threads',
           'set_num_threads']
