"""Pre-flight: a training config that needs SAM caches fails before iteration 1.

``s2c.apis.train`` calls :func:`check_caches` before it builds the runner; code
that builds the runner itself (``Runner.from_cfg``) can call it the same way.
"""
from __future__ import annotations

import json
import os.path as osp
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from s2c.datasets.paths import dataset_paths
from s2c.utils.manifest import MANIFEST_NAME, read_manifest

from .layout import embedding_dir, embedding_path, se_map_dir, se_map_path, train_dataset_cfg


class MissingCacheError(FileNotFoundError):
    """A cache the config needs does not exist or is incomplete; the message holds the
    command that builds (or completes) it."""


class CacheMismatchError(MissingCacheError):
    """A cache the config reads was made with other settings than the config's (e.g.
    Felzenszwalb SE maps for a SAM-AMG config); the message names the differences and the
    command that rebuilds it."""


def check_caches(cfg: Mapping, cli_args: str = '') -> None:
    """Check that every cache the training config reads exists and is complete.

    Checked: the SE-map folder of the training dataset (SSC) and, for CPM with
    the ``'cached'`` embedding source, ``model.cpm.embedding_dir``: the folder
    exists and holds an entry for every image of the training list (a partial
    cache would otherwise crash the run at the first batch that needs a missing
    entry, for CPM only from its start epoch), and was made with the config's
    settings (SE provider and parameters; the embeddings' storage dtype,
    ``sam_embeddings.dtype``). Entries are not opened here
    (``--verify`` of the cache tools does that); CPM checks that its back-end
    fits the embedding cache when it is built.

    Args:
        cfg: The training config.
        cli_args: Extra arguments to repeat in the suggested commands
            (e.g. ``--data-root ... --cfg-options ...``).

    Raises:
        MissingCacheError: With the exact ``tools/cache_*.py`` command to run
            (reruns resume: only the missing entries are computed).
        CacheMismatchError: A cache of other settings (names the differences and the
            rebuild command).
    """
    config = shlex.quote(getattr(cfg, 'filename', None) or 'CONFIG')  # paths with spaces
    suffix = f' {cli_args}' if cli_args else ''
    names = _train_names(cfg)
    se_dir = se_map_dir(cfg) if cfg.get('train_dataloader') else None
    cpm = (cfg.get('model') or {}).get('cpm') or {}
    needed = []  # (what, folder, entry path, tool, settings differences, config key)
    if se_dir:
        needed.append(('SE maps', se_dir, se_map_path, 'cache_se_maps',
                       se_settings_differences, 'train_dataloader.dataset.se_map_dir'))
    if cpm and cpm.get('embedding_source', 'cached') == 'cached':
        needed.append(('SAM embeddings', embedding_dir(cfg), embedding_path,
                       'cache_sam_embeddings', embedding_settings_differences,
                       'model.cpm.embedding_dir'))
    for what, folder, path_of, tool, differences, key in needed:
        command = f'python tools/{tool}.py {config}{suffix}'
        _require_cache(what, folder, path_of, names, command)
        manifest = read_manifest(osp.join(folder, MANIFEST_NAME))
        diffs = differences(cfg, manifest) if manifest else []
        if diffs:
            raise CacheMismatchError(
                f'the {what} in {folder} were made with other settings than this config: '
                f'{"; ".join(diffs)}. Point {key} at the cache made with these settings, '
                f'or rebuild this one:\n    {command} --overwrite')


def embedding_settings_differences(cfg: Mapping, manifest: Mapping) -> list[str]:
    """What differs between an embedding cache's manifest and the config's ``sam_embeddings``:
    the storage dtype (``'float16'`` when either leaves it unset). The reader returns float32
    from both, but int8 values are quantised: a run would not be what its config says.

    Returns:
        list[str]: ``'dtype <cache value> (config: <value>)'``; empty when they agree.
    """
    made = (manifest.get('key') or {}).get('dtype') or 'float16'
    wanted = (cfg.get('sam_embeddings') or {}).get('dtype') or 'float16'
    return [] if made == wanted else [f'dtype {made!r} (config: {wanted!r})']


def _plain(value: Any) -> Any:
    """JSON-normalised value (tuples as lists), as manifests store them."""
    return json.loads(json.dumps(value, default=str))


def se_settings_differences(cfg: Mapping, manifest: Mapping) -> list[str]:
    """What differs between an SE cache's manifest and the config's ``se_maps`` / ``sam``.

    Compared: the provider type, every provider parameter the config sets that the
    manifest records, the overlap rule and the SAM model type. Parameters the config leaves
    to their defaults are not compared (the manifest records them filled in).

    Returns:
        list[str]: ``'name <cache value> (config: <value>)'`` entries; empty when they agree.
    """
    key = manifest.get('key') or {}
    se_cfg = cfg.get('se_maps') or {}
    pcfg = dict(se_cfg.get('provider') or {})
    made = key.get('provider') or {}
    diffs = []
    if pcfg.get('type') and made.get('type') != pcfg['type']:
        diffs.append(f'provider {made.get("type")!r} (config: {pcfg["type"]!r})')
    else:
        for name, value in pcfg.items():
            if name not in ('type', 'checkpoint') and name in made \
                    and _plain(made[name]) != _plain(value):
                diffs.append(f'{name} {made[name]!r} (config: {value!r})')
    overlap = se_cfg.get('overlap')
    if overlap and key.get('overlap') and key['overlap'] != overlap:
        diffs.append(f'overlap {key["overlap"]!r} (config: {overlap!r})')
    sam_key, sam_cfg = key.get('sam') or {}, cfg.get('sam') or {}
    if sam_key.get('model_type') and sam_cfg.get('model_type') \
            and sam_key['model_type'] != sam_cfg['model_type']:
        diffs.append(f'SAM {sam_key["model_type"]!r} (config: {sam_cfg["model_type"]!r})')
    return diffs


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
