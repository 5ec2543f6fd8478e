"""Pre-flight checks: a config that needs SAM caches fails before the first iteration."""
from __future__ import annotations

import os.path as osp
from collections.abc import Callable

from mmengine.config import Config


class MissingCacheError(FileNotFoundError):
    """A cache the config needs does not exist; the message holds the command that builds it."""


def check_caches(cfg: Config, cli_args: str = '') -> None:
    """Check that every cache the training config reads exists.

    Checked: the SE-map folder of the training dataset (SSC; relative paths are
    relative to the dataset's ``data_root``) and, for CPM with the ``'cached'``
    embedding source, ``model.cpm.embedding_dir`` (relative to the working dir):
    the folder exists and holds an entry for every image of the training list
    (a partial cache would otherwise crash the run at the first batch that
    needs a missing entry, for CPM only from its start epoch). Entries are not
    opened here (``--verify`` of the cache tools does that).

    Args:
        cfg: The training config (after :func:`s2c.apis.config.resolve_sam_settings`).
        cli_args: Extra arguments to repeat in the suggested commands
            (e.g. ``--cfg-options ...``).

    Raises:
        MissingCacheError: With the exact ``tools/cache_*.py`` command to run
            (reruns resume: only the missing entries are computed).
    """
    from s2c.sam.cache_layout import embedding_path, se_map_path
    config = getattr(cfg, 'filename', None) or 'CONFIG'
    suffix = f' {cli_args}' if cli_args else ''
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    names = _train_names(dataset)
    se_dir = dataset.get('se_map_dir')
    if se_dir:
        path = osp.join(dataset.get('data_root', ''), se_dir)  # join keeps absolute paths
        _require_cache('SE maps', path, se_map_path, names,
                       f'python tools/cache_se_maps.py {config}{suffix}')
    cpm = cfg.get('model', {}).get('cpm') or {}
    if cpm and cpm.get('embedding_source', 'cached') == 'cached':
        _require_cache('SAM embeddings', cpm.get('embedding_dir'), embedding_path, names,
                       f'python tools/cache_sam_embeddings.py {config}{suffix}')


def _train_names(dataset: dict) -> list[str]:
    """Image ids of the training list (``ann_file`` under ``data_root``); [] if unknown."""
    from s2c.datasets.voc12 import read_split
    ann_file = dataset.get('ann_file')
    if not ann_file:
        return []
    path = osp.join(dataset.get('data_root', ''), ann_file)
    return read_split(path) if osp.isfile(path) else []  # the dataset reports a bad list


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
