"""The SAM embedding store: one record file per image, read by memory mapping.

File format (format version 1: float16; format version 2: int8)
---------------------------------------------------------------
One standard NumPy ``.npy`` file per image, ``<cache_dir>/<name>.npy``, holding a
structured array of shape ``(1,)`` (a single record). ``sam_embeddings.dtype`` in the
config chooses the storage dtype of the cache (``'float16'`` by default, or ``'int8'``,
about half the size); the manifest records it (``key.dtype``, and ``format_version``
1 / 2), and a cache of one dtype is never resumed or extended by a job of the other.
The fields, in order:

=============== ========= ================ ==============================================
field           dtype     shape            meaning
=============== ========= ================ ==============================================
input_size      int32     (2,)             ``(h, w)`` of the image after SAM's resize of
                                           the longest side to ``img_size`` (before the
                                           bottom-right padding), SAM input frame
original_size   int32     (2,)             ``(H, W)`` of the original image, pixels
crc32           uint32    ()               CRC-32 (zlib) of all bytes after ``reserved``
reserved        uint32    ()               0
embedding_scale float32   (256,)           int8 only: per-channel scale of ``embedding``
early_scale     float32   (C,)             int8 only, with early features: per-channel
                                           scale of ``early``
embedding       float16   (256, h', w')    SAM image embedding (``image_encoder`` output),
                / int8                     ``h' = w' = img_size / 16`` (64 for the standard
                                           models at 1024 px, 16 for ``tiny`` at 256 px)
early           float16   (h', w', C)      only when ``early_features=True``: output of the
                / int8                     first global-attention ViT block (HQ-SAM /
                                           RobustSAM; vit_b block 2 C=768, vit_l 5 C=1024,
                                           vit_h 7 C=1280), channels last as the ViT emits it
=============== ========= ================ ==============================================

Values are computed in float32. float16: rounded to float16. int8: symmetric
per-channel quantisation (:func:`~s2c.caches.embedding_record.quantize_per_channel`):
``scale = max|x| / 127`` over each channel (axis 0 of the embedding, the last axis of
the early features), ``q = round(x / scale)`` in ``[-127, 127]``; the reader returns
``q * scale``, within ``scale / 2`` of ``x``. The record is packed (no padding): the
24-byte prefix keeps the payload 8-byte aligned after the 64-byte-aligned ``.npy``
header (the float32 scales come before the int8 values), and a file opens with
``np.load(path, mmap_mode='r')`` anywhere, without s2c. Only the pages that are
touched are read, so a cache larger than RAM is fine.

Size per image, file total (record + the ``.npy`` header: 256 B for float16, 320 B for
int8, 384 B for int8 with early features), :func:`entry_file_nbytes`:

============================= ======================= =======================
model (embedding, early)      float16                 int8
============================= ======================= =======================
vit_b/l/h (256 x 64 x 64)     2,097,432 B (2.0 MiB)   1,049,944 B (1.0 MiB)
vit_b + early (64 x 64 x 768) 8,388,888 B (8.0 MiB)   4,198,808 B (4.0 MiB)
vit_l + early (... x 1024)    10,486,040 B (10.0 MiB) 5,248,408 B (5.0 MiB)
vit_h + early (... x 1280)    12,583,192 B (12.0 MiB) 6,298,008 B (6.0 MiB)
tiny (256 x 16 x 16)          131,352 B (128 KiB)     66,904 B (65 KiB)
tiny + early (16 x 16 x 64)   164,120 B (160 KiB)     83,544 B (82 KiB)
============================= ======================= =======================

VOC train_aug (10,582 images) with vit_h and no early features: 20.7 GiB float16,
10.3 GiB int8; COCO train2014 (82,081 images): 160.3 GiB float16, 80.3 GiB int8.
The cache jobs refuse to start when the missing entries (these sizes) would not fit
on the disk.

Every file is written to a ``.tmp-*`` name and renamed into place
(:func:`s2c.utils.atomic_write`), so a file under its final name is complete; the
CRC-32 lets ``--verify`` detect later corruption. The folder's
``manifest.json`` (written by :mod:`s2c.caches.embedding_job`) says which image
encoder made the cache (its ``encoder_id``) and the storage dtype. The record
functions live in :mod:`s2c.caches.embedding_record` (re-exported here).
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from s2c.structures import ImageFeatures
from s2c.utils.manifest import MANIFEST_NAME, entry_files, read_manifest

from .embedding_record import (
    EMBEDDING_DTYPES,
    EMBEDDING_FORMAT_VERSION,
    FORMAT_VERSIONS,
    RECORD_PREFIX_BYTES,
    check_entry,
    check_storage_dtype,
    dequantize,
    entry_dtype,
    entry_file_nbytes,
    entry_nbytes,
    load_entry,
    quantize_per_channel,
    read_entry_header,
    save_entry,
)
from .layout import EMBEDDING_KIND, EMBEDDING_SUFFIX, embedding_path

__all__ = [
    'EmbeddingStore', 'EMBEDDING_DTYPES', 'EMBEDDING_FORMAT_VERSION', 'FORMAT_VERSIONS',
    'RECORD_PREFIX_BYTES', 'check_entry', 'check_storage_dtype', 'dequantize', 'entry_dtype',
    'entry_file_nbytes', 'entry_nbytes', 'load_entry', 'quantize_per_channel',
    'read_entry_header', 'save_entry'
]


class EmbeddingStore:
    """Read-only access to a SAM embedding cache folder, memory mapped.

    Format-agnostic: float16 and int8 caches (``storage_dtype``, from the manifest)
    read as the same float32 features (:meth:`get_batch`); :meth:`get_raw` gives the
    stored values.

    Args:
        root: Cache folder (holds ``manifest.json`` and ``<name>.npy``).

    Raises:
        FileNotFoundError: When ``root`` or its manifest does not exist (the
            message says which tool makes it).
        ValueError: When the manifest is unreadable or not an embedding cache of
            a known format.

    Example:
        >>> store = EmbeddingStore('data/VOCdevkit/VOC2012/sam_embeddings/vit_h')
        >>> feats = store.get_batch(['2007_000032', '2007_000039'], 'cuda')
        >>> feats.embeddings.shape  # (2, 256, 64, 64) float32 on cuda
    """

    def __init__(self, root: str) -> None:
        self.root = root
        manifest = read_manifest(osp.join(root, MANIFEST_NAME)) if osp.isdir(root) else None
        if manifest is None:
            raise FileNotFoundError(
                f'no SAM embedding cache at {root} (missing {osp.join(root, MANIFEST_NAME)}); '
                'make it with `python tools/cache_sam_embeddings.py CONFIG` (the config whose '
                'model.cpm.embedding_dir is this folder)')
        if manifest.get('kind') != EMBEDDING_KIND:
            raise ValueError(f'{root} is a {manifest.get("kind")!r} cache, not {EMBEDDING_KIND!r}')
        key = manifest.get('key') or {}
        version = manifest.get('format_version')
        self.storage_dtype = key.get('dtype') or 'float16'
        if FORMAT_VERSIONS.get(self.storage_dtype) != version:
            known = ', '.join(f'{v} ({d})' for d, v in FORMAT_VERSIONS.items())
            raise ValueError(
                f'{root} has embedding format version {version} with dtype '
                f'{self.storage_dtype!r}; this code reads versions {known}; recompute it with '
                'tools/cache_sam_embeddings.py --overwrite')
        self.manifest = manifest
        self.embedding_shape: tuple[int, ...] = tuple(key['embedding_shape'])
        early = key.get('early_shape')
        self.early_shape: tuple[int, ...] | None = None if early is None else tuple(early)
        self.img_size = int(key.get('img_size') or 16 * self.embedding_shape[-1])
        self.dtype = entry_dtype(self.embedding_shape, self.early_shape, self.storage_dtype)

    @property
    def has_early(self) -> bool:
        """Whether the cache stores early ViT features."""
        return self.early_shape is not None

    @property
    def encoder_id(self) -> str | None:
        """:func:`s2c.sam.build.encoder_id` of the encoder that made the cache."""
        return self.manifest['key'].get('encoder_id')

    def path(self, name: str) -> str:
        """File of image ``name``."""
        return embedding_path(self.root, name)

    def __contains__(self, name: str) -> bool:
        return osp.isfile(self.path(name))

    def names(self) -> list[str]:
        """Sorted names of all entries present."""
        return sorted(e.name[:-len(EMBEDDING_SUFFIX)]
                      for e in entry_files(self.root, EMBEDDING_SUFFIX))

    def __len__(self) -> int:
        return len(self.names())

    def check_backend(self, backend: Any) -> None:
        """Raise when a prompt back-end cannot decode on these embeddings.

        Args:
            backend: A :class:`~s2c.sam.backends.PromptBackend` (``encoder_id``,
                ``requires``, ``img_size``).

        Raises:
            ValueError: Naming what differs (the encoder, the input size, missing
                early features) and the fix.
        """
        problems = []
        if self.encoder_id is None:
            problems.append('the cache predates encoder_id (made by an older s2c); rebuild it '
                            'with tools/cache_sam_embeddings.py --overwrite')
        elif self.encoder_id != backend.encoder_id:
            problems.append(f'the cache was made by image encoder {self.encoder_id!r}, the '
                            f'back-end\'s checkpoint holds {backend.encoder_id!r}')
        if self.img_size != backend.img_size:
            problems.append(f'input size {self.img_size} px != back-end {backend.img_size} px')
        if 'early' in backend.requires and not self.has_early:
            problems.append('the back-end requires early ViT features, the cache has none '
                            '(sam_embeddings.early_features=False)')
        if problems:
            raise ValueError(f'SAM embedding cache {self.root} does not fit the prompt back-end '
                             f'{type(backend).__name__}: ' + '; '.join(problems) + '. Point '
                             'model.cpm.embedding_dir at a matching cache or build one with '
                             'tools/cache_sam_embeddings.py (sam.model_type / sam.checkpoint '
                             'as the back-end, sam_embeddings.early_features=True if required).')

    def get_raw(self, name: str) -> dict:
        """One image's entry as stored, memory mapped (see
        :func:`~s2c.caches.embedding_record.load_entry`: float16 values, or int8 values
        with their float32 scales).

        Raises:
            KeyError: When the image is not in the cache (names the file and the tool).
            ValueError: When the entry is unreadable, or of another shape or dtype than
                the manifest.
        """
        path = self.path(name)
        try:
            entry = load_entry(path, mmap=True)
        except FileNotFoundError:
            raise KeyError(f'image {name!r} is not in the SAM embedding cache ({path} missing); '
                           'run tools/cache_sam_embeddings.py for the split that holds it'
                           ) from None
        if entry['embedding'].shape != self.embedding_shape or (
                (entry['early'] is None) != (self.early_shape is None)) or \
                entry['dtype'] != self.storage_dtype:
            raise ValueError(f'{path}: entry shape {entry["embedding"].shape} ({entry["dtype"]}) '
                             f'does not match the manifest ({self.embedding_shape}, early '
                             f'{self.early_shape}, {self.storage_dtype}); run the cache tool '
                             'with --verify')
        return entry

    def get(self, name: str) -> dict:
        """One image's entry as floats.

        Args:
            name: Image id (e.g. ``'2007_000032'``).

        Returns:
            dict: ``embedding`` (256, h', w') and ``early`` (h', w', C) or ``None``:
            float16 memmaps for a float16 cache, float32 arrays (``q * scale``) for an
            int8 cache; ``input_size`` ``(h, w)`` (SAM input frame, before padding) and
            ``original_size`` ``(H, W)``.

        Raises:
            KeyError: When the image is not in the cache (names the file and the tool).
            ValueError: When the entry is unreadable or of another shape than the manifest.
        """
        entry = self.get_raw(name)
        if entry['dtype'] == 'int8':
            entry['embedding'] = dequantize(entry['embedding'], entry['embedding_scale'], 0)
            if entry['early'] is not None:
                entry['early'] = dequantize(entry['early'], entry['early_scale'], -1)
        for key in ('dtype', 'embedding_scale', 'early_scale'):
            del entry[key]
        return entry

    def get_batch(self, names: Sequence[str], device: str | torch.device = 'cpu',
                  with_early: bool = True) -> ImageFeatures:
        """Entries of several images as :class:`~s2c.structures.ImageFeatures` on ``device``.

        The stored values are stacked on the CPU, moved to ``device`` as stored
        (float16: half the transfer of float32; int8 plus the float32 scales: a
        quarter) and converted to float32 there (int8: ``q * scale``, the same
        values as :meth:`get`). Whatever the storage dtype, the result is float32.

        Args:
            names: ``B`` image ids (repeats allowed).
            device: Target device.
            with_early: Also read the early features (when the cache has them).

        Returns:
            ImageFeatures: ``embeddings`` (B, 256, h', w') float32, ``early``
            (B, h', w', C) float32 or ``None``, ``input_sizes`` / ``original_sizes``
            (B, 2) long, ``img_size``.

        Raises:
            KeyError / ValueError: As :meth:`get_raw`.
        """
        device = torch.device(device)
        entries = [self.get_raw(n) for n in names]
        stored = np.int8 if self.storage_dtype == 'int8' else np.float16

        def stack(key: str, shape: tuple[int, ...], channel_axis: int) -> torch.Tensor:
            arr = np.stack([e[key] for e in entries]) if entries else np.zeros((0, *shape),
                                                                                stored)
            values = torch.from_numpy(arr).to(device, non_blocking=True).float()
            if self.storage_dtype != 'int8':
                return values
            scales = np.stack([e[key + '_scale'] for e in entries]) if entries else \
                np.zeros((0, shape[channel_axis]), np.float32)
            view = [len(entries)] + [1] * len(shape)
            view[1 + channel_axis % len(shape)] = shape[channel_axis]
            return values * torch.from_numpy(scales).to(device, non_blocking=True).view(view)

        def sizes(key: str) -> torch.Tensor:
            return torch.tensor([e[key] for e in entries], dtype=torch.long,
                                device=device).reshape(-1, 2)

        early = None
        if with_early and self.early_shape is not None:
            early = stack('early', self.early_shape, -1)
        return ImageFeatures(embeddings=stack('embedding', self.embedding_shape, 0), early=early,
                             input_sizes=sizes('input_size'),
                             original_sizes=sizes('original_size'), img_size=self.img_size)
