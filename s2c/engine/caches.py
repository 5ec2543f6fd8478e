"""Pre-flight checks: a config that needs SAM caches fails before the first iteration."""
from __future__ import annotations

import os.path as osp

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
    se_dir = dataset.get('se_map_dir')
    if se_dir:
        path = osp.join(dataset.get('data_root', ''), se_dir)  # join keeps absolute paths
        if not osp.isdir(path):
            raise MissingCacheError(
                f'SE maps {path} not found. Build them first (once per dataset):\n'
                f'    python tools/cache_se_maps.py {config}{suffix}')
        _check_complete('SE maps', path, se_map_path, _train_names(dataset),
                        f'python tools/cache_se_maps.py {config}{suffix}')
    cpm = cfg.get('model', {}).get('cpm') or {}
    if cpm and cpm.get('embedding_source', 'cached') == 'cached':
        path = cpm.get('embedding_dir')
        if not path or not osp.isdir(path):
            raise MissingCacheError(
                f'SAM embeddings {path} not found. Build them first (once per dataset):\n'
                f'    python tools/cache_sam_embeddings.py {config}{suffix}')
        _check_complete('SAM embeddings', path, embedding_path, _train_names(dataset),
                        f'python tools/cache_sam_embeddings.py {config}{suffix}')


def _train_names(dataset: dict) -> list[str]:
    """Image ids of the training list (``ann_file`` under ``data_root``); [] if unknown."""
    from s2c.datasets.voc12 import read_split
    ann_file = dataset.get('ann_file')
    if not ann_file:
        return []
    path = osp.join(dataset.get('data_root', ''), ann_file)
    return read_split(path) if osp.isfile(path) else []  # the dataset reports a bad list


def _check_complete(what: str, cache_dir: str, entry_path, names: list[str],
                    command: str) -> None:
    missing = [n for n in names if not osp.isfile(entry_path(cache_dir, n))]
    if missing:
        shown = ', '.join(missing[:5]) + (' ...' if len(missing) > 5 else '')
        raise MissingCacheError(
            f'{what} in {cache_dir} are incomplete: {len(missing)} of {len(names)} training '
            f'images have no entry ({shown}); an interrupted or sharded cache job? Complete '
            f'it (existing entries are skipped):\n    {command}')
