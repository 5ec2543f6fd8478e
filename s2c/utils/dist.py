"""Which share of a list this process takes: ``--shard I/N`` and torchrun ranks.

``shard=(I, N)`` takes images ``k`` with ``k % N == I`` (strided, so shards get
a similar mix). Under torchrun (env ``RANK``/``WORLD_SIZE``, or an initialised
process group) rank ``r`` of ``W`` then takes every ``W``-th image of that
shard starting at ``r``. The union over all shards and ranks is the whole list
and the parts are disjoint.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """Parse ``'I/N'`` (or a pair) with ``0 <= I < N``; ``None`` stays ``None``.

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

    From an initialised ``torch.distributed`` group (MMEngine's launcher) or
    else the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    ``(0, 1, 0)`` for a plain process.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        world = torch.distributed.get_world_size()
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
