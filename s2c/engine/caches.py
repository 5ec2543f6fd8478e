"""Pre-flight checks: a config that needs SAM caches fails before the first iteration."""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config


class MissingCacheError(FileNotFoundError):
    """A cache the config needs does not exist; the message holds the command that builds it."""


def _config_path(cfg: Config) -> str:
    return cfg.filename if getattr(cfg, 'filename', None) else 'CONFIG'


def check_caches(cfg: Config) -> None:
    """Check that every cache the training config reads exists.

    Currently: the SE-map folder of the training dataset (SSC) and the SAM
    embedding cache of CPM (``model.cpm.embedding_dir`` when the embedding
    source is ``'cached'``).

    Raises:
        MissingCacheError: With the exact ``tools/cache_*.py`` command to run.
    """
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    se_dir = dataset.get('se_map_dir')
    if se_dir:
        root = dataset.get('data_root', '')
        path = se_dir if osp.isabs(se_dir) else osp.join(root, se_dir)
        if not osp.isdir(path):
            raise MissingCacheError(
                f'SE maps {path} not found. Build them first:\n'
                f'    python tools/cache_se_maps.py {_config_path(cfg)}')
    cpm = cfg.get('model', {}).get('cpm') or {}
    emb = cpm.get('embedding_dir') if cpm.get('embedding_source', 'cached') == 'cached' else None
    if emb:
        root = dataset.get('data_root', '')
        path = emb if osp.isabs(emb) else osp.join(root, emb)
        if not osp.isdir(path):
            raise MissingCacheError(
                f'SAM embeddings {path} not found. Build them first:\n'
                f'    python tools/cache_sam_embeddings.py {_config_path(cfg)}')
