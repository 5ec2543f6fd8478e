"""Both SAM caches of a config with one image-encoder pass per image (``tools/cache_sam.py``).

A config that trains with SSC on SAM segment-everything maps *and* CPM on cached
embeddings needs SAM's image encoder twice per image when the two jobs run
separately (:func:`~s2c.caches.run_se_map_job`, :func:`~s2c.caches.run_embedding_job`).
:func:`run_sam_cache_jobs` builds SAM once and, for an image that both caches
miss, lets the segment-everything provider encode it and keeps that encoder
call's output: the float32 embedding (and the early ViT block's output, by a
hook on that block in the same call) that the provider decodes from is the
one written into the embedding record. Both caches end up equal to what the two
separate jobs write, byte for byte for the embedding files:

- the kept call is the one whose input tensor equals, value for value, the
  embedding job's preprocessing of the same image (and runs under the same
  autocast state) -- for ``sam_amg`` that is the encoder call of the full-image
  crop (crop layer 0); the encoder is deterministic for a given input, and the
  call has batch 1, as the embedding job with ``batch_size=1`` (its default; a
  larger batch may change the float rounding of the encoder, in either job, so
  byte equality with a batched embedding job is not promised);
- when no call qualifies (e.g. a provider that preprocesses differently), the
  embedding is computed by its own encoder pass, exactly as the embedding job.

Resume is per image and per cache: an image whose SE map and embedding both
exist is skipped; one with only the embedding is segmented (an encoder pass:
the stored float16/int8 values are not what the provider would decode from); one
with only the SE map is encoded. Each cache keeps its own manifest, lock,
disk-space check, verify/repair and summary, identical to its separate job (a
cache made here is resumed by the separate job and vice versa); sharding
(``--shard I/N``, torchrun ranks) splits the images the same way for both.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from s2c.sam.transforms import preprocess_image
from s2c.utils.fileio import check_free_space
from s2c.utils.job_summary import JobSummary
from s2c.utils.manifest import (
    MANIFEST_NAME,
    ManifestMismatchError,
    manifest_differences,
    read_manifest,
)

from . import layout
from .embedding_job import EmbeddingEncoder, embedding_compute_job, run_embedding_job
from .image_loop import compute_images
from .job_sam import build_job_sam, sam_block
from .runner import (
    CacheJob,
    JobOptions,
    claimed_job,
    finish_summary,
    job_device,
    job_images,
    missing_entries,
    new_summary,
)
from .se_map_job import (
    provider_uses_sam,
    report_empty_maps,
    run_se_map_job,
    se_map_compute_job,
    se_provider_cfg,
)

#: Result of one image in the combined job: ``(SE-map error, embedding error)``; each is
#: ``None`` (written), a message, or :data:`NOT_NEEDED` (that cache had the entry).
NOT_NEEDED = 'not needed'


@dataclass
class SamCachesSummary:
    """Outcome of :func:`run_sam_cache_jobs`: one summary per cache the config reads.

    Attributes:
        se_maps: The SE-map cache's summary, or ``None`` when the config has none.
        embeddings: The embedding cache's summary, or ``None`` when the config has none.
        encoder_calls: Image-encoder calls this process made (each crop of a crop
            layer is a call; 0 when the two jobs ran separately and were not counted).
        shared: Whether both caches were computed in one pass (``False``: the two
            jobs ran one after the other, e.g. for a provider without SAM).
    """

    se_maps: JobSummary | None = None
    embeddings: JobSummary | None = None
    encoder_calls: int = 0
    shared: bool = False

    @property
    def summaries(self) -> list[JobSummary]:
        """The summaries present, SE maps first."""
        return [s for s in (self.se_maps, self.embeddings) if s is not None]

    @property
    def ok(self) -> bool:
        """No failed (or, for verify, bad) image in any cache."""
        return all(s.ok for s in self.summaries)

    def format(self, max_listed: int = 50) -> str:
        """Both summaries (see :meth:`JobSummary.format`) and the encoder-call count."""
        if not self.summaries:
            return ('[sam caches] the config reads no SAM cache (neither train_dataloader.'
                    'dataset.se_map_dir nor model.cpm.embedding_dir with cached embeddings): '
                    'nothing to do')
        lines = [s.format(max_listed) for s in self.summaries]
        if self.shared:
            lines.append(f'[sam caches] one encoder pass for both caches: {self.encoder_calls} '
                         'image-encoder call(s) in this process')
        return '\n'.join(lines)


class EncoderTap:
    """Keep the output of the image-encoder call that the embedding job would make.

    While active (``with tap:``), every call of ``encoder`` is watched; the first
    one whose input equals ``expected`` (same shape, dtype, device and values) and
    whose autocast state is ``autocast`` is kept: its output as float32 on the CPU
    (``embedding``, ``(1, 256, h', w')``) and, with ``early_block``, the output of
    that block in the same call (``early``, ``(1, h', w', C)``). The calls
    themselves are unchanged.

    Args:
        encoder: SAM's ``ImageEncoderViT``.
        expected: ``(1, 3, S, S)`` float32 input of the embedding job for the image.
        early_block: Index of the ViT block whose output to keep too, or ``None``.
        autocast: Whether the embedding job encodes under autocast (bf16).
    """

    def __init__(self, encoder: nn.Module, expected: torch.Tensor,
                 early_block: int | None = None, autocast: bool = False) -> None:
        self.encoder, self.expected = encoder, expected
        self.early_block, self.autocast = early_block, bool(autocast)
        self.embedding: torch.Tensor | None = None
        self.early: torch.Tensor | None = None
        self._active = False
        self._early_out: torch.Tensor | None = None
        self._handles: list[Any] = []

    @property
    def captured(self) -> bool:
        """Whether a qualifying call was kept (with its early features when asked)."""
        return self.embedding is not None and (self.early_block is None or
                                               self.early is not None)

    def _autocast_enabled(self) -> bool:
        device_type = self.expected.device.type
        try:
            return bool(torch.is_autocast_enabled(device_type))
        except TypeError:  # torch < 2.4: no device argument
            return bool(torch.is_autocast_enabled() if device_type == 'cuda'
                        else torch.is_autocast_cpu_enabled())

    def _pre(self, _module: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        self._active = (self.embedding is None and isinstance(x, torch.Tensor)
                        and x.shape == self.expected.shape and x.dtype == self.expected.dtype
                        and x.device == self.expected.device and torch.equal(x, self.expected)
                        and self._autocast_enabled() == self.autocast)

    def _block(self, _module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        if self._active and self._early_out is None:
            self._early_out = output.detach().float().cpu().clone()

    def _post(self, _module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        if self._active:
            self.embedding = output.detach().float().cpu().clone()
            self.early = self._early_out
            self._active = False

    def __enter__(self) -> EncoderTap:
        self._handles = [self.encoder.register_forward_pre_hook(self._pre),
                         self.encoder.register_forward_hook(self._post)]
        if self.early_block is not None:
            self._handles.append(
                self.encoder.blocks[self.early_block].register_forward_hook(self._block))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _refuse_mismatch(job: CacheJob, overwrite: bool) -> None:
    """Raise before either folder is claimed when one holds a cache of other settings."""
    if overwrite:
        return
    old = read_manifest(osp.join(job.cache_dir, MANIFEST_NAME))
    diffs = manifest_differences(old, job.manifest) if old is not None else []
    if diffs:
        raise ManifestMismatchError(
            f'{job.cache_dir} already holds a {job.kind} cache made with other settings:\n  - '
            + '\n  - '.join(diffs) + '\nRerun with --overwrite (overwrite=True) to replace it '
            '(its entries are deleted), or write elsewhere with --se-out / --embedding-out '
            '(se_out= / embedding_out=). Nothing was written.')


def _probe_device(folder: str) -> int:
    probe = osp.abspath(folder)
    while not osp.isdir(probe) and osp.dirname(probe) != probe:
        probe = osp.dirname(probe)
    return os.stat(probe).st_dev


def _check_joint_space(jobs: Sequence[CacheJob], names: Sequence[str],
                       options: JobOptions) -> None:
    """When both folders are on one file system, their missing entries together must fit
    (each folder's own check follows when it is claimed)."""
    if len({_probe_device(job.cache_dir) for job in jobs}) != 1:
        return
    counts = [missing_entries(job, names, options) for job in jobs]
    need = sum(n * job.entry_bytes for n, job in zip(counts, jobs))
    if need:
        what = ' and '.join(f'{n:,} {job.kind}' for n, job in zip(counts, jobs)) + ' entries'
        check_free_space(jobs[-1].cache_dir, need, what)


def _combined_compute(se_job: CacheJob, encoder: EmbeddingEncoder, need_se: set[str],
                      need_emb: set[str]) -> Any:
    """``[(name, image)] -> [(name, (SE-map error, embedding error))]`` (see
    :data:`NOT_NEEDED`): one provider call (one encoder pass) for an image both caches
    miss, the embedding kept from it."""
    image_encoder = encoder.sam.image_encoder
    img_size = int(image_encoder.img_size)
    autocast = encoder.autocast_dtype is not None

    def one_pass(name: str, image: np.ndarray) -> tuple[str | None, str | None]:
        device = next(image_encoder.parameters()).device
        expected, input_size = preprocess_image(image, img_size, device=device)
        tap = EncoderTap(image_encoder, expected, encoder.early_block, autocast)
        with tap:
            (_, se_err), = se_job.compute([(name, image)])
        if not tap.captured:  # the provider failed before encoding, or encodes otherwise
            (_, emb_err), = encoder.compute([(name, image)])
            return se_err, emb_err
        try:
            encoder.write(name, tap.embedding[0].numpy(), input_size, image.shape[:2],
                          None if tap.early is None else tap.early[0].numpy())
        except Exception as exc:
            return se_err, f'{type(exc).__name__}: {exc}'
        return se_err, None

    def compute(batch: list[tuple[str, np.ndarray]]) -> list[tuple[str, Any]]:
        results: dict[str, tuple[str | None, str | None]] = {}
        emb_only = [(n, img) for n, img in batch if n not in need_se]
        if emb_only:  # batched like the embedding job
            for name, err in encoder.compute(emb_only):
                results[name] = (NOT_NEEDED, err)
        for name, image in batch:
            if name not in need_se:
                continue
            if name in need_emb:
                results[name] = one_pass(name, image)
            else:
                (_, se_err), = se_job.compute([(name, image)])
                results[name] = (se_err, NOT_NEEDED)
        return [(name, results[name]) for name, _ in batch]

    return compute


def run_sam_cache_jobs(cfg: Mapping, options: JobOptions | None = None, *,
                       provider: str | None = None, se_out: str | None = None,
                       embedding_out: str | None = None,
                       **overrides: Any) -> SamCachesSummary:
    """Build (complete, verify or repair) the SE-map and embedding caches a config reads.

    With a SAM-based SE provider and both caches, each image is encoded once for
    both (see the module docstring); otherwise (one cache, a provider without
    SAM, ``verify``) the separate jobs run one after the other. The result equals
    the separate jobs' (byte for byte with ``batch_size=1``, see the module docstring).

    Args:
        cfg: Config with ``sam``, ``se_maps``, ``sam_embeddings`` and
            ``train_dataloader.dataset``; the caches are its dataset's ``se_map_dir``
            and ``model.cpm.embedding_dir`` (CPM with cached embeddings), unless
            ``se_out`` / ``embedding_out``.
        options: :class:`~s2c.caches.runner.JobOptions` (split, shard, overwrite,
            verify, repair, batch_size, workers, progress; ``out`` is refused: two
            folders are written).
        provider: SE provider registry name overriding ``se_maps.provider.type``.
        se_out: SE-map folder overriding the config's.
        embedding_out: Embedding folder overriding the config's.
        **overrides: Fields of ``options``.

    Returns:
        SamCachesSummary: ``.ok``, ``.format()``, and each cache's
        :class:`~s2c.utils.job_summary.JobSummary` (``None`` for a cache the config
        does not read; a config that reads neither gets an empty, ok summary).

    Raises:
        ValueError: ``out`` or ``degradation`` given.
        ManifestMismatchError: A folder holds a cache of other settings (nothing is
            written then) and ``overwrite`` is False.
        FileNotFoundError / KeyError: As the separate jobs.

    Example:
        >>> summary = run_sam_cache_jobs(cfg)  # builds or completes both caches
        >>> if not summary.ok:
        ...     raise RuntimeError('SAM caches incomplete:\n' + summary.format())
    """
    options = JobOptions.of(options, **overrides)
    if options.out:
        raise ValueError('out (--out) names one folder, but this job writes two: use se_out= '
                         '/ embedding_out= (--se-out / --embedding-out) or the config folders')
    if options.degradation:
        raise ValueError('degradation applies to the embedding job only: run '
                         'tools/cache_sam_embeddings.py --degradation NAME:LEVEL --out DIR')
    se_dir = se_out or layout.se_map_dir(cfg)
    emb_dir = embedding_out or layout.embedding_dir(cfg)
    if not se_dir and not emb_dir:
        return SamCachesSummary()  # nothing to do (format() says so)
    pcfg, overlap = se_provider_cfg(cfg, provider) if se_dir else (None, None)
    if not (se_dir and emb_dir) or options.verify_only or not provider_uses_sam(pcfg['type']):
        se = run_se_map_job(cfg, options, provider=provider, out=se_dir) if se_dir else None
        emb = run_embedding_job(cfg, options, out=emb_dir) if emb_dir else None
        return SamCachesSummary(se, emb)
    t0 = time.perf_counter()
    paths, names = job_images(cfg, options)
    sam_cfg = sam_block(cfg)
    shared_sam = build_job_sam(sam_cfg, job_device(sam_cfg.get('device', 'auto')))
    emb_job, encoder = embedding_compute_job(cfg, options, emb_dir, paths, shared_sam)
    se_job, _, empty = se_map_compute_job(cfg, se_dir, paths, pcfg, overlap, shared_sam)
    jobs = (se_job, emb_job)
    for job in jobs:
        _refuse_mismatch(job, options.overwrite)
    _check_joint_space(jobs, names, options)
    se_sum, mine, bar_kw = new_summary(se_job, names, options)
    emb_sum, _, _ = new_summary(emb_job, names, options)
    summaries = (se_sum, emb_sum)
    calls = [0]

    def count(*_args: Any) -> None:
        calls[0] += 1

    with contextlib.ExitStack() as stack:
        todos = [set(stack.enter_context(claimed_job(job, names, mine, s, options, bar_kw)))
                 for job, s in zip(jobs, summaries)]
        todo = [n for n in mine if n in todos[0] or n in todos[1]]
        handle = encoder.sam.image_encoder.register_forward_pre_hook(count)
        stack.callback(handle.remove)

        def record(name: str, errors: tuple[str | None, str | None]) -> bool:
            for summary, err in zip(summaries, errors):
                if err is None:
                    summary.done.append(name)
                elif err != NOT_NEEDED:
                    summary.fail(name, err)
            return all(err in (None, NOT_NEEDED) for err in errors)

        def fail(name: str, message: str, reason: str = 'error') -> None:
            for summary, need in zip(summaries, todos):
                if name in need:
                    summary.fail(name, message, reason)

        compute_images(todo, paths, options.num_workers,
                       _combined_compute(se_job, encoder, *todos), record, fail,
                       batch_size=options.batch_size, desc='SE maps + embeddings',
                       bar_kw=bar_kw)
        for job, summary in zip(jobs, summaries):
            finish_summary(job, summary, t0)
    report_empty_maps(se_sum, empty)
    return SamCachesSummary(se_sum, emb_sum, encoder_calls=calls[0], shared=True)
