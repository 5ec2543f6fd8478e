"""Where the SAM caches live and how their directories are named.

Two caches are computed once per dataset (``tools/cache_se_maps.py``,
``tools/cache_sam_embeddings.py``) and read during training:

- SE maps: ``<data_root>/se_maps/<tag>/<name>.png`` (uint16 PNG, 0 = no segment).
- SAM embeddings: ``<data_root>/sam_embeddings/<tag>/<name>.npy`` (see
  :mod:`s2c.sam.embedding_cache` for the record format).

Each directory also holds ``manifest.json`` (what made the cache; see
:mod:`s2c.sam.cache_jobs`). A config value ``root`` (``se_maps.root`` /
``sam_embeddings.root``) that is not ``None`` is the cache directory itself (no
tag is appended); ``--out`` of the tools overrides both.

The tag is readable (provider / model / overlap rule / early features) plus an
8-hex-digit hash of every parameter that changes the content, so two
configurations never share a directory by accident. The hash uses the
checkpoint *file name*, not its SHA-256 (hashing a 2.5 GB file to find a
directory would be slow); the manifest inside records the SHA-256 and refuses a
different checkpoint under the same name.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os.path as osp
import re
from collections.abc import Mapping
from typing import Any

MANIFEST_NAME = 'manifest.json'
SE_MAP_SUFFIX = '.png'
EMBEDDING_SUFFIX = '.npy'

#: SE providers that run SAM (their cache key includes the SAM model).
#: Providers may also declare ``uses_sam = True`` as a class attribute.
SAM_BASED_PROVIDERS = ('sam_amg', 'sam_amg_reference')

_TAG_CHARS = re.compile(r'[^A-Za-z0-9._-]+')


def _to_plain(obj: Any) -> Any:
    """Turn ConfigDicts, tuples and numpy scalars into JSON-friendly values."""
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if hasattr(obj, 'item') and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    return obj


def short_hash(obj: Any, length: int = 8) -> str:
    """First ``length`` hex digits of the SHA-256 of ``obj`` as canonical JSON."""
    text = json.dumps(_to_plain(obj), sort_keys=True, separators=(',', ':'), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _clean(text: str) -> str:
    return _TAG_CHARS.sub('_', text).strip('_') or 'x'


def checkpoint_name(sam_cfg: Mapping) -> str:
    """Checkpoint file stem (``sam_vit_h_4b8939``) or ``'random-init'`` when ``None``."""
    ckpt = sam_cfg.get('checkpoint')
    if not ckpt:
        return 'random-init'
    return osp.splitext(osp.basename(str(ckpt)))[0]


def provider_uses_sam(provider_type: str) -> bool:
    """Whether an SE provider runs SAM (so its cache key includes the SAM model).

    A registered provider runs SAM when its class has ``uses_sam = True`` or its
    constructor takes a ``sam`` argument; unregistered names fall back to
    :data:`SAM_BASED_PROVIDERS`.
    """
    try:
        from s2c.registry import SE_PROVIDERS
        cls = SE_PROVIDERS.get(provider_type)
    except Exception:  # registry import issues must not break path computation
        cls = None
    if cls is None:
        return provider_type in SAM_BASED_PROVIDERS
    if hasattr(cls, 'uses_sam'):
        return bool(cls.uses_sam)
    try:
        return 'sam' in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return provider_type in SAM_BASED_PROVIDERS


def sam_identity(sam_cfg: Mapping) -> dict:
    """The SAM settings that change a cache's content (used in tags).

    Args:
        sam_cfg: The config's ``sam`` block (``model_type``, ``checkpoint``,
            ``autocast_dtype``).

    Returns:
        dict: ``model_type``, ``checkpoint`` (file name or ``'random-init'``),
        ``autocast_dtype``.
    """
    return dict(model_type=str(sam_cfg.get('model_type')), checkpoint=checkpoint_name(sam_cfg),
                autocast_dtype=sam_cfg.get('autocast_dtype'))


def se_map_tag(se_maps_cfg: Mapping, sam_cfg: Mapping | None) -> str:
    """Directory tag of an SE map cache, e.g. ``sam_amg-vit_h-smallest_on_top-1a2b3c4d``.

    Args:
        se_maps_cfg: The config's ``se_maps`` block (``provider`` dict with
            ``type`` and parameters, ``overlap``).
        sam_cfg: The config's ``sam`` block; only used when the provider runs SAM.

    Returns:
        str: ``<provider>[-<model_type>][-<checkpoint>]-<overlap>-<hash8>``.
    """
    provider = dict(se_maps_cfg['provider'])
    ptype = str(provider['type'])
    overlap = se_maps_cfg.get('overlap', 'smallest_on_top')
    key: dict[str, Any] = dict(provider=provider, overlap=overlap)
    parts = [ptype]
    if provider_uses_sam(ptype):
        if sam_cfg is None:
            raise ValueError(f'SE provider {ptype!r} runs SAM but the config has no `sam` block')
        ident = sam_identity(sam_cfg)
        key['sam'] = ident
        parts.append(ident['model_type'])
        if ident['checkpoint'] == 'random-init':
            parts.append('random-init')
    parts.append(str(overlap))
    parts.append(short_hash(key))
    return '-'.join(_clean(p) for p in parts)


def embedding_tag(sam_cfg: Mapping, sam_embeddings_cfg: Mapping) -> str:
    """Directory tag of an embedding cache, e.g. ``vit_h-sam_vit_h_4b8939-early-1a2b3c4d``.

    Args:
        sam_cfg: The config's ``sam`` block.
        sam_embeddings_cfg: The config's ``sam_embeddings`` block (``early_features``).

    Returns:
        str: ``<model_type>-<checkpoint>[-early][-bf16]-<hash8>``.
    """
    ident = sam_identity(sam_cfg)
    early = bool(sam_embeddings_cfg.get('early_features', False))
    key = dict(sam=ident, early_features=early)
    parts = [ident['model_type'], ident['checkpoint']]
    if early:
        parts.append('early')
    if ident['autocast_dtype']:
        parts.append(str(ident['autocast_dtype']))
    parts.append(short_hash(key))
    return '-'.join(_clean(p) for p in parts)


def se_map_cache_dir(data_root: str, se_maps_cfg: Mapping, sam_cfg: Mapping | None) -> str:
    """Directory of an SE map cache.

    Args:
        data_root: Dataset root (e.g. ``data/VOCdevkit/VOC2012``).
        se_maps_cfg: The config's ``se_maps`` block; a non-``None`` ``root`` is
            returned as is.
        sam_cfg: The config's ``sam`` block (``None`` for providers without SAM).

    Returns:
        str: ``se_maps_cfg.root`` or ``<data_root>/se_maps/<tag>``.
    """
    if se_maps_cfg.get('root'):
        return str(se_maps_cfg['root'])
    return osp.join(data_root, 'se_maps', se_map_tag(se_maps_cfg, sam_cfg))


def embedding_cache_dir(data_root: str, sam_cfg: Mapping, sam_embeddings_cfg: Mapping) -> str:
    """Directory of a SAM embedding cache.

    Args:
        data_root: Dataset root.
        sam_cfg: The config's ``sam`` block.
        sam_embeddings_cfg: The config's ``sam_embeddings`` block; a non-``None``
            ``root`` is returned as is.

    Returns:
        str: ``sam_embeddings_cfg.root`` or ``<data_root>/sam_embeddings/<tag>``.
    """
    if sam_embeddings_cfg.get('root'):
        return str(sam_embeddings_cfg['root'])
    return osp.join(data_root, 'sam_embeddings', embedding_tag(sam_cfg, sam_embeddings_cfg))


def manifest_path(cache_dir: str) -> str:
    """``<cache_dir>/manifest.json``."""
    return osp.join(cache_dir, MANIFEST_NAME)


class ManifestUnreadableError(ValueError):
    """``manifest.json`` exists but is not a readable JSON object (e.g. truncated)."""


def read_manifest(cache_dir: str) -> dict | None:
    """Read ``<cache_dir>/manifest.json``.

    Returns:
        dict | None: The manifest, or ``None`` when the file does not exist.

    Raises:
        ManifestUnreadableError: A ``ValueError``: the file exists but cannot be
            read, is not valid JSON or not a JSON object (the message names the
            file and the way out, ``--overwrite``).
    """
    path = manifest_path(cache_dir)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestUnreadableError(
            f'cache manifest {path} is unreadable ({exc}); rerun the cache tool with '
            '--overwrite (every entry is recomputed) or delete the cache directory') from exc
    if not isinstance(manifest, dict):
        raise ManifestUnreadableError(
            f'cache manifest {path} is not a JSON object; rerun the cache tool with '
            '--overwrite (every entry is recomputed) or delete the cache directory')
    return manifest


def se_map_path(se_dir: str, name: str) -> str:
    """``<se_dir>/<name>.png``."""
    return osp.join(se_dir, name + SE_MAP_SUFFIX)


def embedding_path(emb_dir: str, name: str) -> str:
    """``<emb_dir>/<name>.npy``."""
    return osp.join(emb_dir, name + EMBEDDING_SUFFIX)
