"""Pre-flight: a training config that needs SAM caches fails before iteration 1.

``s2c.apis.train`` calls :func:`check_caches` before it builds the runner; code
that builds the runner itself (``Runner.from_cfg``) can call it the same way.
"""
from __future__ import annotations

import os.path as osp
import shlex
from collections.abc import Callable, Mapping

from s2c.datasets.paths import dataset_paths

from .layout import embedding_dir, embedding_path, se_map_dir, se_map_path, train_dataset_cfg


class MissingCacheError(FileNotFoundError):
    """A cache the config needs does not exist or is incomplete; the message holds the
    command that builds (or completes) it."""


def check_caches(cfg: Mapping, cli_args: str = '') -> None:
    """Check that every cache the training config reads exists and is complete.

    Checked: the SE-map folder of the training dataset (SSC) and, for CPM with
    the ``'cached'`` embedding source, ``model.cpm.embedding_dir``: the folder
    exists and holds an entry for every image of the training list (a partial
    cache would otherwise crash the run at the first batch that needs a missing
    entry, for CPM only from its start epoch). Entries are not opened here
    (``--verify`` of the cache tools does that); CPM checks that its back-end
    fits the embedding cache when it is built.

    Args:
        cfg: The training config.
        cli_args: Extra arguments to repeat in the suggested commands
            (e.g. ``--data-root ... --cfg-options ...``).

    Raises:
        MissingCacheError: With the exact ``tools/cache_*.py`` command to run
            (reruns resume: only the missing entries are computed).
    """
    config = shlex.quote(getattr(cfg, 'filename', None) or 'CONFIG')  # paths with spaces
    suffix = f' {cli_args}' if cli_args else ''
    names = _train_names(cfg)
    se_dir = se_map_dir(cfg) if cfg.get('train_dataloader') else None
    if se_dir:
        _require_cache('SE maps', se_dir, se_map_path, names,
                       f'python tools/cache_se_maps.py {config}{suffix}')
    emb_dir = embedding_dir(cfg)
    cpm = (cfg.get('model') or {}).get('cpm') or {}
    if cpm and cpm.get('embedding_source', 'cached') == 'cached':
        _require_cache('SAM embeddings', emb_dir, embedding_path, names,
                       f'python tools/cache_sam_embeddings.py {config}{suffix}')


def _train_names(cfg: Mapping) -> list[str]:
    """Image ids of the training list; [] when unknown (the dataset reports a bad list)."""
    try:
        paths = dataset_paths(train_dataset_cfg(cfg))
    except (KeyError, ValueError, FileNotFoundError):
        return []
    return paths.names() if paths.split_file and osp.isfile(paths.split_file) else []


def _require_cache(what: str, cache_dir: str | None, entry_path: Callable[[str, str], str],
                   names: list[str], command: str) -> None:
    """Raise :class:`MissingCacheError` unless ``cache_dir`` has an entry for every name."""
    if not cache_dir or not osp.isdir(cache_dir):
        raise MissingCacheError(f'{what} {cache_dir} not found. Build them first (once per '
                                f'dataset):\n    {command}')
    missing = [n for n in names if not osp.isfile(entry_path(cache_dir, n))]
    if missing:
        shown = ', '.join(missing[:5]) + (' ...' if len(missing) > 5 else '')
        raise MissingCacheError(
            f'{what} in {cache_dir} are incomplete: {len(missing)} of {len(names)} training '
            f'images have no entry ({shown}); an interrupted or sharded cache job? Complete '
            f'it (existing entries are skipped):\n    {command}')
