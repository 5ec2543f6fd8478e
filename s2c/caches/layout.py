"""Where the SAM caches are: kinds, entry files, and the folders a config reads.

Two caches are computed once per dataset and read during training and
pseudo-labelling:

- SE maps (``tools/cache_se_maps.py``): ``<se_map_dir>/<name>.png``, uint16
  (:mod:`s2c.utils.se_map_io`). The folder is the training dataset's
  ``se_map_dir`` (relative to its ``data_root`` unless absolute), which is
  also where ``LoadSEMap`` reads them.
- SAM embeddings (``tools/cache_sam_embeddings.py``): ``<embedding_dir>/<name>.npy``
  (:mod:`s2c.caches.embedding_store`). The folder is CPM's ``embedding_dir``
  (``model.cpm.embedding_dir``; relative to the working directory unless
  absolute), which is also where CPM reads them.

Configs write both folders as paths derived from ``data_root`` (see
``configs/s2c/``): nothing is resolved behind the scenes, and a config loaded
by MMEngine's ``Runner.from_cfg`` reads the same folders the cache tools
write. Each folder holds ``manifest.json`` (:mod:`s2c.utils.manifest`): what
made the cache; another model or other parameters are refused.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping

from s2c.datasets.paths import dataset_paths, unwrap_dataset_cfg

SE_MAP_KIND = 'se_maps'
EMBEDDING_KIND = 'sam_embeddings'
SE_MAP_SUFFIX = '.png'
EMBEDDING_SUFFIX = '.npy'
#: The tool that builds each cache (named in messages).
CACHE_TOOLS = {SE_MAP_KIND: 'tools/cache_se_maps.py',
               EMBEDDING_KIND: 'tools/cache_sam_embeddings.py'}


def se_map_path(se_dir: str, name: str) -> str:
    """``<se_dir>/<name>.png``."""
    return osp.join(se_dir, name + SE_MAP_SUFFIX)


def embedding_path(emb_dir: str, name: str) -> str:
    """``<emb_dir>/<name>.npy``."""
    return osp.join(emb_dir, name + EMBEDDING_SUFFIX)


def train_dataset_cfg(cfg: Mapping) -> Mapping:
    """The innermost ``train_dataloader.dataset`` of a config.

    Raises:
        KeyError: When the config has no ``train_dataloader.dataset``.
    """
    loader = cfg.get('train_dataloader') or {}
    if 'dataset' not in loader:
        raise KeyError('the config has no train_dataloader.dataset; the cache jobs read '
                       'data_root, ann_file, img_dir and img_suffix from it')
    return unwrap_dataset_cfg(loader['dataset'])


def se_map_dir(cfg: Mapping) -> str | None:
    """The SE-map folder of a config: the training dataset's ``se_map_dir`` under its
    ``data_root`` (an absolute path is kept), or ``None`` when it has none."""
    ds = train_dataset_cfg(cfg)
    if not ds.get('se_map_dir'):
        return None
    if not ds.get('data_root'):  # the dataset itself reports the missing data_root
        return str(ds['se_map_dir'])
    return dataset_paths(ds, require_list=False).se_map_dir


def embedding_dir(cfg: Mapping) -> str | None:
    """The embedding folder of a config: ``model.cpm.embedding_dir`` when CPM reads
    cached embeddings, else ``None``."""
    cpm = (cfg.get('model') or {}).get('cpm') or {}
    if cpm.get('embedding_source', 'cached') != 'cached':
        return None
    return cpm.get('embedding_dir') or None
