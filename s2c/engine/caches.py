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
    embedding source, ``model.cpm.embedding_dir`` (relative to the working dir).

    Args:
        cfg: The training config (after :func:`s2c.apis.config.resolve_sam_settings`).
        cli_args: Extra arguments to repeat in the suggested commands
            (e.g. ``--cfg-options ...``).

    Raises:
        MissingCacheError: With the exact ``tools/cache_*.py`` command to run.
    """
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
    cpm = cfg.get('model', {}).get('cpm') or {}
    if cpm and cpm.get('embedding_source', 'cached') == 'cached':
        path = cpm.get('embedding_dir')
        if not path or not osp.isdir(path):
            raise MissingCacheError(
                f'SAM embeddings {path} not found. Build them first (once per dataset):\n'
                f'    python tools/cache_sam_embeddings.py {config}{suffix}')
