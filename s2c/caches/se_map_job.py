"""The SE-map cache job: segment everything once per image (``tools/cache_se_maps.py``).

``run_se_map_job(cfg, split='train_aug')`` computes ``<se_map_dir>/<name>.png``
for every image of the list with the provider of ``cfg.se_maps`` (SAM's AMG,
the library generator, Felzenszwalb or SLIC; :mod:`s2c.sam.se_providers`),
composed with the configured overlap rule. Resumable, shardable, verifiable
(:mod:`s2c.caches.runner`). The manifest key holds the provider and all its
parameters (defaults filled in), the overlap rule and, for SAM-based
providers, the SAM identity (model type, checkpoint SHA-256 or the random-init
seed, autocast).
"""
from __future__ import annotations

import inspect
import logging
import os.path as osp
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from mmengine.logging import print_log
from PIL import Image

from s2c.datasets.paths import DatasetPaths
from s2c.registry import SE_PROVIDERS
from s2c.utils.image_io import image_size
from s2c.utils.job_summary import JobSummary
from s2c.utils.manifest import make_manifest
from s2c.utils.se_map_io import load_se_map, save_se_map

from . import layout
from .job_sam import build_job_sam, sam_block, sam_info
from .runner import (
    BAD_ENTRY,
    IMAGE_UNREADABLE,
    MISSING,
    CacheJob,
    JobOptions,
    Problem,
    job_device,
    job_images,
    run_cache_job,
)

SE_MAP_FORMAT_VERSION = 1
_PNG16_MODES = ('I;16', 'I;16B', 'I;16L', 'I')


#: Upper estimate of one SE map on disk (uint16 PNG; measured 1-60 KiB on VOC), for the
#: disk-space check before a job starts.
SE_MAP_BYTES_ESTIMATE = 64 * 1024


def provider_uses_sam(provider_type: str) -> bool:
    """Whether a registered SE provider runs SAM (its class has ``uses_sam = True`` or
    its constructor takes ``sam``), so that its cache key includes the SAM model.

    Raises:
        KeyError: For an unregistered provider (lists the registered ones).
    """
    cls = SE_PROVIDERS.get(provider_type)
    if cls is None:
        raise KeyError(f'unknown SE provider {provider_type!r}; registered: '
                       f'{sorted(SE_PROVIDERS.module_dict)}')
    if hasattr(cls, 'uses_sam'):
        return bool(cls.uses_sam)
    return 'sam' in inspect.signature(cls).parameters


def provider_cfg(se_cfg: Mapping, provider: str | None) -> dict:
    """The provider config, with ``provider`` (a registry name) overriding the type.

    When the type changes, the old parameters are kept only where the new
    provider takes them: named in its constructor, or both constructors take
    ``**kwargs`` (e.g. ``sam_amg`` <-> ``sam_amg_reference``). Dropped ones are logged.

    Raises:
        KeyError: For an unknown provider.
    """
    pcfg = dict(se_cfg['provider'])
    if provider is None or provider == pcfg.get('type'):
        return pcfg
    new_cls = SE_PROVIDERS.get(provider)
    if new_cls is None:
        raise KeyError(f'unknown SE provider {provider!r}; registered: '
                       f'{sorted(SE_PROVIDERS.module_dict)}')
    old_cls = SE_PROVIDERS.get(pcfg.get('type')) if pcfg.get('type') else None

    def var_kw(cls: Any) -> bool:
        return cls is not None and any(p.kind is p.VAR_KEYWORD
                                       for p in inspect.signature(cls).parameters.values())

    named = set(inspect.signature(new_cls).parameters)
    share_kwargs = var_kw(new_cls) and var_kw(old_cls)
    params = {k: v for k, v in pcfg.items() if k != 'type'}
    kept = {k: v for k, v in params.items() if k in named or share_kwargs}
    dropped = sorted(set(params) - set(kept))
    if dropped:
        print_log(f'--provider {provider}: dropping parameters of {pcfg.get("type")!r} that '
                  f'{provider!r} does not take: {dropped}', logger='current',
                  level=logging.INFO)
    return dict(type=provider, **kept)


def _png_header_size(path: str) -> tuple[int, int] | str:
    """``(H, W)`` of a 16-bit PNG from its header, or the reason it is not one."""
    try:
        with Image.open(path) as img:
            if img.format != 'PNG' or img.mode not in _PNG16_MODES:
                return f'not a 16-bit PNG ({img.format}, mode {img.mode})'
            return img.height, img.width
    except Exception as exc:
        return f'unreadable: {exc}'


def _checks(cache_dir: str, image_path: Any) -> tuple[Any, Any]:
    """The resume check (headers only) and the full check of SE-map entries."""

    def quick_check(name: str) -> str | None:
        path = layout.se_map_path(cache_dir, name)
        if not osp.isfile(path):
            return MISSING
        png_hw = _png_header_size(path)
        if isinstance(png_hw, str):
            return png_hw
        # Reading the image header (no decoding) costs about as much as the PNG header
        # (~30 us per VOC JPEG). An image that cannot be read is not judged here:
        # computing its map would fail anyway.
        try:
            hw = image_size(image_path(name))
        except Exception:
            return None
        return None if png_hw == hw else f'size {png_hw} differs from its image {hw}'

    def full_check(name: str) -> Problem | None:
        path = layout.se_map_path(cache_dir, name)
        if not osp.isfile(path):
            return MISSING, MISSING
        try:
            se = load_se_map(path)
        except Exception as exc:
            return BAD_ENTRY, f'unreadable: {exc}'
        try:
            hw = image_size(image_path(name))
        except Exception as exc:
            return IMAGE_UNREADABLE, f'its image is unreadable ({exc})'
        if tuple(se.shape) != hw:
            return BAD_ENTRY, f'size {se.shape} differs from its image {hw}'
        return None

    return quick_check, full_check


def se_map_cache_dir(cfg: Mapping, options: JobOptions) -> str:
    """``options.out`` or the training dataset's ``se_map_dir`` (under its ``data_root``).

    Raises:
        ValueError: When there is neither.
    """
    cache_dir = options.out or layout.se_map_dir(cfg)
    if not cache_dir:
        raise ValueError('no SE-map folder: set train_dataloader.dataset.se_map_dir in the config '
                         '(relative to data_root) or pass --out DIR')
    return cache_dir


def se_provider_cfg(cfg: Mapping, provider: str | None = None) -> tuple[dict, str]:
    """The provider config (``provider`` overriding its type) and the overlap rule.

    Raises:
        KeyError: No ``se_maps`` block, or an unknown provider.
    """
    if cfg.get('se_maps') is None:
        raise KeyError('the config has no `se_maps` block (see configs/_base_/sam/*.py)')
    se_cfg = dict(cfg['se_maps'])
    return provider_cfg(se_cfg, provider), se_cfg.get('overlap', 'smallest_on_top')


def se_map_verify_job(cache_dir: str, paths: DatasetPaths) -> CacheJob:
    """The job that only verifies the SE maps in ``cache_dir``."""
    quick_check, full_check = _checks(cache_dir, paths.image_path)
    return CacheJob(layout.SE_MAP_KIND, cache_dir, layout.SE_MAP_SUFFIX, None,
                    partial(layout.se_map_path, cache_dir), quick_check, full_check,
                    lambda batch: [])


def se_map_compute_job(cfg: Mapping, cache_dir: str, paths: DatasetPaths, pcfg: Mapping,
                       overlap: str, shared_sam: tuple[Any, dict] | None = None
                       ) -> tuple[CacheJob, Callable[[np.ndarray], np.ndarray], list[str]]:
    """The SE-map job that computes entries (not yet run).

    Args:
        cfg: Config with (SAM-based providers) ``sam``.
        cache_dir: The cache folder.
        paths: Where the images are.
        pcfg: The provider config, ``overlap`` the overlap rule (:func:`se_provider_cfg`).
        shared_sam: ``(model, identity)`` from :func:`~s2c.caches.job_sam.build_job_sam`
            of ``cfg.sam`` when already built (the combined job); else a SAM-based
            provider builds it here.

    Returns:
        tuple: The :class:`~s2c.caches.runner.CacheJob`, the provider
        (``image -> (H, W) uint16 map``) and the list its ``compute`` appends the
        names of segment-free maps to.

    Raises:
        KeyError: No ``sam`` block for a SAM-based provider.
    """
    quick_check, full_check = _checks(cache_dir, paths.image_path)
    build_cfg = dict(pcfg, overlap=overlap)
    key_sam, info = None, {}
    if provider_uses_sam(pcfg['type']):
        sam_cfg = sam_block(cfg)
        if shared_sam is None:
            shared_sam = build_job_sam(sam_cfg, job_device(sam_cfg.get('device', 'auto')))
        sam, ident = shared_sam
        # the whole SAM makes SE maps: keyed by the checkpoint's SHA-256 (or the seed)
        key_sam = {k: v for k, v in ident.items() if k != 'encoder_id'}
        build_cfg.update(sam=sam, autocast_dtype=sam_cfg.get('autocast_dtype'))
        info = sam_info(sam_cfg)
    se_provider = SE_PROVIDERS.build(build_cfg)
    # provider.params: every parameter that changes the output, defaults filled in; the
    # checkpoint path is informational (its SHA-256 is the identity).
    params = {k: v for k, v in se_provider.params.items() if k not in ('provider', 'checkpoint')}
    key = dict(provider=dict(type=pcfg['type'], **params), overlap=overlap, sam=key_sam,
               entry=dict(format='png', dtype='uint16', background=0))
    manifest = make_manifest(layout.SE_MAP_KIND, SE_MAP_FORMAT_VERSION, key,
                             dict(images=paths.split_file, data_root=paths.data_root, **info))
    empty: list[str] = []  # computed maps without any segment

    def entry_path(name: str) -> str:
        return layout.se_map_path(cache_dir, name)

    def compute(batch: list[tuple[str, np.ndarray]]) -> list[tuple[str, str | None]]:
        results = []
        for name, image in batch:
            try:
                se = np.asarray(se_provider(image))
                if se.shape != image.shape[:2]:
                    raise ValueError(f'provider returned shape {se.shape} for an image of '
                                     f'{image.shape[:2]}')
                save_se_map(entry_path(name), se)  # atomic (temp file + rename)
                if not se.any():
                    empty.append(name)
                results.append((name, None))
            except Exception as exc:
                results.append((name, f'{type(exc).__name__}: {exc}'))
        return results

    job = CacheJob(layout.SE_MAP_KIND, cache_dir, layout.SE_MAP_SUFFIX, manifest, entry_path,
                   quick_check, full_check, compute, entry_bytes=SE_MAP_BYTES_ESTIMATE)
    return job, se_provider, empty


def run_se_map_job(cfg: Mapping, options: JobOptions | None = None, *,
                   provider: str | None = None, **overrides: Any) -> JobSummary:
    """Compute (or verify) the SE-map cache of a dataset.

    Args:
        cfg: Config with ``se_maps`` (provider, overlap), ``sam`` (for SAM-based
            providers) and ``train_dataloader.dataset`` (images; ``se_map_dir`` is
            the cache folder unless ``options.out``).
        options: :class:`~s2c.caches.runner.JobOptions` (split, out, shard,
            overwrite, verify, repair, workers, progress).
        provider: SE provider registry name overriding ``se_maps.provider.type``.
        **overrides: Fields of ``options`` (e.g. ``out=..., progress=False``).

    Returns:
        JobSummary: ``summary.ok`` is False when an image failed (or an entry is bad).

    Raises:
        ValueError: No cache folder (neither ``se_map_dir`` nor ``out``).
        ManifestMismatchError: The folder holds a cache of other settings and
            ``overwrite`` is False.
        ManifestUnreadableError: Its manifest is unreadable and ``overwrite`` is False.
        FileNotFoundError: With ``verify``, when the folder or its manifest does not exist.
    """
    options = JobOptions.of(options, **overrides)
    if options.degradation:
        raise ValueError('degradation applies to the embedding job only')
    pcfg, overlap = se_provider_cfg(cfg, provider)  # the config errors first
    cache_dir = se_map_cache_dir(cfg, options)
    paths, names = job_images(cfg, options)
    if options.verify_only:
        return run_cache_job(se_map_verify_job(cache_dir, paths), paths, names, options)
    job, _, empty = se_map_compute_job(cfg, cache_dir, paths, pcfg, overlap)
    summary = run_cache_job(job, paths, names, options)
    report_empty_maps(summary, empty)
    return summary


#: Warn when more than this fraction of the computed SE maps has no segment at all.
EMPTY_MAP_WARN_FRACTION = 0.2


def report_empty_maps(summary: JobSummary, empty: Sequence[str]) -> None:
    """Add the count of segment-free maps to the summary; warn when they are many (SSC
    learns nothing from an image without segments)."""
    computed = len(summary.done)
    if not computed:
        return
    frac = len(empty) / computed
    summary.notes.append(f'  empty maps  : {len(empty)} of {computed} computed ({frac:.0%})'
                         + (f', e.g. {", ".join(empty[:3])}' if empty else ''))
    if frac > EMPTY_MAP_WARN_FRACTION:
        message = (f'WARNING: {frac:.0%} of the SE maps have no segment, so SSC gets no '
                   'signal from those images: lower se_maps.provider.pred_iou_thresh / '
                   'stability_score_thresh, or check the SAM checkpoint (random weights give '
                   'empty maps)')
        summary.notes.append('  ' + message)
        print_log(message, logger='current', level=logging.WARNING)
