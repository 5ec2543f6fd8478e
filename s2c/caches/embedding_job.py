"""The embedding cache job: SAM's image encoder once per image (``tools/cache_sam_embeddings.py``).

``run_embedding_job(cfg)`` encodes every image of the list with the SAM of
``cfg.sam`` and writes one record per image (:mod:`s2c.caches.embedding_store`)
into CPM's ``embedding_dir`` (or ``out``): the embedding and, with
``sam_embeddings.early_features=True``, the output of the first
global-attention ViT block (HQ-SAM / RobustSAM), stored as float16 or, with
``sam_embeddings.dtype='int8'``, as per-channel int8 (half the size). Resumable,
shardable, verifiable (:mod:`s2c.caches.runner`). The manifest key holds the
encoder's identity (:func:`s2c.sam.build.encoder_id`), autocast, the record shapes
and the storage dtype (and the format version is the dtype's): a prompt back-end
whose checkpoint holds the same image encoder reads it, and a job of the other
storage dtype refuses the folder. :class:`EmbeddingEncoder` is also what
:mod:`s2c.caches.sam_jobs` writes records with.
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from s2c.datasets.degradations import degrade, parse_degradations
from s2c.datasets.paths import DatasetPaths
from s2c.sam.build import build_sam, encoder_id
from s2c.sam.encoder import early_block_index, encode_images
from s2c.sam.transforms import get_preprocess_shape
from s2c.utils.image_io import image_size
from s2c.utils.job_summary import JobSummary
from s2c.utils.manifest import make_manifest, write_manifest

from . import layout
from .embedding_record import (
    FORMAT_VERSIONS,
    check_entry,
    check_storage_dtype,
    entry_dtype,
    entry_file_nbytes,
    save_entry,
)
from .job_sam import RANDOM_INIT_SEED, build_job_sam, sam_block, sam_info
from .runner import (
    BAD_ENTRY,
    IMAGE_UNREADABLE,
    MISSING,
    CacheJob,
    JobOptions,
    Problem,
    job_device,
    job_images,
    manifest_for_verify,
    run_cache_job,
)


def embedding_record_shapes(sam: torch.nn.Module,
                            early_block: int | None) -> tuple[list[int], list[int] | None]:
    """``(256, h', w')`` and ``(h', w', C)`` (or ``None``) of a model's cache records."""
    enc = sam.image_encoder
    grid = int(enc.img_size) // int(enc.patch_embed.proj.stride[0])
    emb = [int(enc.neck[0].out_channels), grid, grid]
    early = None if early_block is None else [grid, grid, int(enc.patch_embed.proj.out_channels)]
    return emb, early


def _full_check(cache_dir: str, key: Mapping,
                image_path: Callable[[str], str]) -> Callable[[str], Problem | None]:
    """The full check of one entry against a manifest key (the one in the cache)."""
    expected = None
    if 'embedding_shape' in key:
        expected = entry_dtype(key['embedding_shape'], key.get('early_shape'),
                               key.get('dtype') or 'float16')
    img_size = key.get('img_size')

    def full_check(name: str) -> Problem | None:
        path = layout.embedding_path(cache_dir, name)
        reason = check_entry(path, expected, full=True)
        if reason is not None:
            return (MISSING if reason == MISSING else BAD_ENTRY), reason
        rec = np.load(path, mmap_mode='r')
        try:
            hw = image_size(image_path(name))
        except Exception as exc:
            return IMAGE_UNREADABLE, f'its image is unreadable ({exc})'
        org = tuple(int(v) for v in rec['original_size'][0])
        if org != hw:
            return BAD_ENTRY, f'original_size {org} differs from its image {hw}'
        if img_size:
            want = get_preprocess_shape(hw[0], hw[1], int(img_size))
            got = tuple(int(v) for v in rec['input_size'][0])
            if got != want:
                return BAD_ENTRY, f'input_size {got} differs from SAM resize of {hw} ({want})'
        return None

    return full_check


@dataclass
class EmbeddingEncoder:
    """How this job encodes images and writes their records (shared with the combined job).

    Attributes:
        sam: The SAM whose image encoder runs (eval, on the job's device).
        early_block: ViT block whose output is stored too, or ``None``.
        autocast_dtype: ``None`` or ``'bf16'`` (``sam.autocast_dtype``).
        dtype: Storage dtype, ``'float16'`` or ``'int8'`` (``sam_embeddings.dtype``).
        cache_dir: The cache folder.
    """

    sam: torch.nn.Module
    early_block: int | None
    autocast_dtype: str | None
    dtype: str
    cache_dir: str

    def write(self, name: str, embedding: np.ndarray, input_size: Sequence[int],
              original_size: Sequence[int], early: np.ndarray | None = None) -> None:
        """Write the record of image ``name`` from float32 values (``(256, h', w')`` and
        ``(h', w', C)`` or ``None``; see :func:`~s2c.caches.embedding_record.save_entry`)."""
        save_entry(layout.embedding_path(self.cache_dir, name), embedding, input_size,
                   original_size, early, dtype=self.dtype)

    def compute(self, batch: list[tuple[str, np.ndarray]]) -> list[tuple[str, str | None]]:
        """Encode a batch of ``(name, RGB image)`` in one encoder call and write the records.

        Returns:
            list: ``(name, error message or None)`` per image.
        """
        feats = encode_images(self.sam, [img for _, img in batch], early_block=self.early_block,
                              autocast_dtype=self.autocast_dtype)
        emb = feats.embeddings.cpu().numpy()
        ear = feats.early.cpu().numpy() if feats.early is not None else None
        results = []
        for i, (name, _) in enumerate(batch):
            try:
                self.write(name, emb[i], feats.input_sizes[i].tolist(),
                           feats.original_sizes[i].tolist(), None if ear is None else ear[i])
                results.append((name, None))
            except Exception as exc:
                results.append((name, f'{type(exc).__name__}: {exc}'))
        return results


def embedding_cache_dir(cfg: Mapping, options: JobOptions) -> str:
    """``options.out`` or the config's ``model.cpm.embedding_dir``.

    Raises:
        ValueError: When there is neither.
    """
    cache_dir = options.out or layout.embedding_dir(cfg)
    if not cache_dir:
        raise ValueError('no embedding folder: set model.cpm.embedding_dir in the config or '
                         'pass --out DIR')
    return cache_dir


def embedding_verify_job(cache_dir: str, paths: DatasetPaths) -> CacheJob:
    """The job that only verifies the cache in ``cache_dir`` (against its own manifest).

    Raises:
        FileNotFoundError: When the folder or its manifest does not exist.
    """
    key = manifest_for_verify(cache_dir, layout.EMBEDDING_KIND).get('key') or {}
    return CacheJob(layout.EMBEDDING_KIND, cache_dir, layout.EMBEDDING_SUFFIX, None,
                    partial(layout.embedding_path, cache_dir), lambda name: None,
                    _full_check(cache_dir, key, paths.image_path), lambda batch: [])


def embedding_compute_job(cfg: Mapping, options: JobOptions, cache_dir: str,
                          paths: DatasetPaths,
                          shared_sam: tuple[torch.nn.Module, dict] | None = None
                          ) -> tuple[CacheJob, EmbeddingEncoder]:
    """The embedding job that computes entries (not yet run).

    Args:
        cfg: Config with ``sam`` and ``sam_embeddings`` (``early_features``, ``dtype``).
        options: The job options (batch size, degradation).
        cache_dir: The cache folder.
        paths: Where the images are.
        shared_sam: ``(model, identity)`` from :func:`~s2c.caches.job_sam.build_job_sam`
            of ``cfg.sam`` when already built (the combined job); else it is built here.

    Returns:
        tuple: The :class:`~s2c.caches.runner.CacheJob` and its :class:`EmbeddingEncoder`.

    Raises:
        ValueError: For an unknown ``sam_embeddings.dtype`` or degradation.
    """
    sam_cfg = sam_block(cfg)
    emb_cfg = dict(cfg.get('sam_embeddings') or {})
    dtype = check_storage_dtype(emb_cfg.get('dtype'))
    autocast = sam_cfg.get('autocast_dtype')
    if shared_sam is None:
        shared_sam = build_job_sam(sam_cfg, job_device(sam_cfg.get('device', 'auto')))
    sam, ident = shared_sam
    early = bool(emb_cfg.get('early_features', False))
    early_block = early_block_index(sam, sam_cfg['model_type']) if early else None
    emb_shape, early_shape = embedding_record_shapes(sam, early_block)
    key = dict(model_type=ident['model_type'], encoder_id=ident['encoder_id'],
               img_size=ident['img_size'], autocast_dtype=autocast, early_features=early,
               early_block=early_block, embedding_shape=emb_shape, early_shape=early_shape,
               dtype=dtype)
    if dtype == 'int8':  # float16 keys stay as they were (existing caches resume)
        key['quantization'] = 'symmetric_per_channel_absmax'
    transform = None
    if options.degradation:  # degraded images: their own folder, keyed by the degradation
        (name, level), = parse_degradations([options.degradation])
        seed = int(options.degradation_seed)
        key['degradation'] = dict(name=name, level=level, seed=seed)

        def transform(image_id: str, image: np.ndarray) -> np.ndarray:
            return degrade(image, name, level, seed=seed, key=image_id)
    expected = entry_dtype(emb_shape, early_shape, dtype)
    manifest = make_manifest(layout.EMBEDDING_KIND, FORMAT_VERSIONS[dtype], key, dict(
        images=paths.split_file, data_root=paths.data_root, bytes_per_entry=expected.itemsize,
        checkpoint_sha256=ident['checkpoint_sha256'],
        random_init_seed=ident['random_init_seed'], **sam_info(sam_cfg)))
    encoder = EmbeddingEncoder(sam, early_block, autocast, dtype, cache_dir)

    def entry_path(name: str) -> str:
        return layout.embedding_path(cache_dir, name)

    job = CacheJob(layout.EMBEDDING_KIND, cache_dir, layout.EMBEDDING_SUFFIX, manifest,
                   entry_path, lambda name: check_entry(entry_path(name), expected, full=False),
                   _full_check(cache_dir, key, paths.image_path), encoder.compute,
                   batch_size=options.batch_size, image_transform=transform,
                   entry_bytes=entry_file_nbytes(emb_shape, early_shape, dtype))
    return job, encoder


def run_embedding_job(cfg: Mapping, options: JobOptions | None = None,
                      **overrides: Any) -> JobSummary:
    """Compute (or verify) the SAM embedding cache of a dataset.

    Args:
        cfg: Config with ``sam``, ``sam_embeddings`` (``early_features``; ``dtype``:
            ``'float16'``, the default, or ``'int8'``), ``train_dataloader.dataset``
            (images) and ``model.cpm.embedding_dir`` (the cache folder unless
            ``options.out``).
        options: :class:`~s2c.caches.runner.JobOptions` (split, out, shard,
            overwrite, verify, repair, batch_size, workers, progress, degradation).
        **overrides: Fields of ``options`` (e.g. ``out=..., batch_size=4``).

    Returns:
        JobSummary: ``summary.ok`` is False when an image failed (or an entry is bad).

    Raises:
        ValueError: No cache folder (neither ``model.cpm.embedding_dir`` nor ``out``);
            an unknown ``sam_embeddings.dtype``.
        ManifestMismatchError: The folder holds a cache of another encoder, other
            parameters or the other storage dtype, and ``overwrite`` is False.
        ManifestUnreadableError: Its manifest is unreadable and ``overwrite`` is False.
        FileNotFoundError: With ``verify``, when the folder or its manifest does not exist.
    """
    options = JobOptions.of(options, **overrides)
    cache_dir = embedding_cache_dir(cfg, options)
    paths, names = job_images(cfg, options)
    if options.verify_only:
        return run_cache_job(embedding_verify_job(cache_dir, paths), paths, names, options)
    job, _ = embedding_compute_job(cfg, options, cache_dir, paths)
    # repair runs after the folder is claimed, so the manifest on disk has this run's key
    return run_cache_job(job, paths, names, options)


def write_synthetic_embedding_cache(cache_dir: str, names: Sequence[str], model_type: str,
                                    original_size: tuple[int, int], seed: int = 0,
                                    source: str = 'synthetic', dtype: str = 'float16') -> None:
    """Random-valued embedding records plus the job's manifest (benchmarks only).

    Decoding cost does not depend on the values, so benchmarks of CPM and SAM
    refinement use this instead of running the image encoder. The records
    carry the ``encoder_id`` of the random-init ``model_type`` (seed
    :data:`~s2c.caches.job_sam.RANDOM_INIT_SEED`), so a random-weight back-end
    accepts them; the manifest says loudly that the embeddings are random.

    Args:
        cache_dir: Output folder.
        names: Image ids.
        model_type: SAM model type whose embedding shape to use.
        original_size: ``(H, W)`` recorded for every image.
        seed: Seed of the random values.
        source: Who wrote it (goes into the manifest).
        dtype: Storage dtype (``'float16'`` or ``'int8'``).
    """
    dtype = check_storage_dtype(dtype)
    sam = build_sam(model_type, None, device='cpu', seed=RANDOM_INIT_SEED)
    img_size = int(sam.image_encoder.img_size)
    emb_shape, early_shape = embedding_record_shapes(sam, None)
    key = dict(model_type=model_type,
               encoder_id=encoder_id(model_type, None, seed=RANDOM_INIT_SEED, model=sam),
               img_size=img_size, autocast_dtype=None, early_features=False, early_block=None,
               embedding_shape=emb_shape, early_shape=early_shape, dtype=dtype)
    if dtype == 'int8':
        key['quantization'] = 'symmetric_per_channel_absmax'
    del sam
    manifest = make_manifest(layout.EMBEDDING_KIND, FORMAT_VERSIONS[dtype], key, dict(
        images=source, bytes_per_entry=entry_dtype(emb_shape, early_shape, dtype).itemsize,
        warning=f'RANDOM EMBEDDINGS written by {source}'))
    os.makedirs(cache_dir, exist_ok=True)
    write_manifest(osp.join(cache_dir, 'manifest.json'), manifest)
    input_size = get_preprocess_shape(original_size[0], original_size[1], img_size)
    rng = np.random.default_rng(seed)
    for name in names:
        emb = rng.standard_normal(emb_shape, dtype=np.float32) * 0.5
        save_entry(layout.embedding_path(cache_dir, name), emb, input_size, original_size,
                   dtype=dtype)
