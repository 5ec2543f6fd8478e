"""The SAM embedding store: one record file per image, read by memory mapping.

File format (format version 1)
-------------------------------
One standard NumPy ``.npy`` file per image, ``<cache_dir>/<name>.npy``, holding a
structured array of shape ``(1,)`` (a single record) with the fields, in order:

============== ========= ================ ==============================================
field          dtype     shape            meaning
============== ========= ================ ==============================================
input_size     int32     (2,)             ``(h, w)`` of the image after SAM's resize of
                                          the longest side to ``img_size`` (before the
                                          bottom-right padding), SAM input frame
original_size  int32     (2,)             ``(H, W)`` of the original image, pixels
crc32          uint32    ()               CRC-32 (zlib) of all bytes after ``reserved``
reserved       uint32    ()               0
embedding      float16   (256, h', w')    SAM image embedding (``image_encoder`` output),
                                          ``h' = w' = img_size / 16`` (64 for the standard
                                          models at 1024 px, 16 for ``tiny`` at 256 px)
early          float16   (h', w', C)      only when ``early_features=True``: output of the
                                          first global-attention ViT block (HQ-SAM /
                                          RobustSAM; vit_b block 2 C=768, vit_l 5 C=1024,
                                          vit_h 7 C=1280), channels last as the ViT emits it
============== ========= ================ ==============================================

Values are computed in float32 and stored as float16. The record is packed
(no padding): the 24-byte prefix keeps the float16 data 8-byte aligned after the
64-byte-aligned ``.npy`` header, and a file opens with
``np.load(path, mmap_mode='r')`` anywhere, without s2c. Only the pages that are
touched are read, so a cache larger than RAM is fine.

Size per image, file total (record + the 256-byte ``.npy`` header): standard models
(256 x 64 x 64) 2,097,432 B (2.0 MiB); with early features vit_b 8,388,888 B (8.0 MiB),
vit_l 10,486,040 B (10.0 MiB), vit_h 12,583,192 B (12.0 MiB); ``tiny`` (256 x 16 x 16)
131,352 B (128 KiB), with early features (16 x 16 x 64) 164,120 B. VOC train_aug (10,582
images) with vit_h and no early features: 20.7 GiB.

Every file is written to a ``.tmp-*`` name and renamed into place
(:func:`s2c.utils.atomic_write`), so a file under its final name is complete; the
CRC-32 lets ``--verify`` detect later corruption. The folder's
``manifest.json`` (written by :mod:`s2c.caches.embedding_job`) says which image
encoder made the cache (its ``encoder_id``).
"""
from __future__ import annotations

import os
import os.path as osp
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from s2c.structures import ImageFeatures
from s2c.utils.fileio import atomic_write
from s2c.utils.manifest import MANIFEST_NAME, entry_files, read_manifest

from .layout import EMBEDDING_KIND, EMBEDDING_SUFFIX, embedding_path

EMBEDDING_FORMAT_VERSION = 1
#: Bytes before the float16 payload in a record (input_size, original_size, crc32, reserved).
RECORD_PREFIX_BYTES = 24


def entry_dtype(embedding_shape: Sequence[int],
                early_shape: Sequence[int] | None = None) -> np.dtype:
    """The structured dtype of one cache record.

    Args:
        embedding_shape: ``(256, h', w')``.
        early_shape: ``(h', w', C)`` or ``None`` when early features are not stored.

    Returns:
        np.dtype: Packed little-endian structured dtype (see the module docstring).
    """
    fields = [('input_size', '<i4', (2,)), ('original_size', '<i4', (2,)), ('crc32', '<u4'),
              ('reserved', '<u4'), ('embedding', '<f2', tuple(int(s) for s in embedding_shape))]
    if early_shape is not None:
        fields.append(('early', '<f2', tuple(int(s) for s in early_shape)))
    return np.dtype(fields)


def entry_nbytes(embedding_shape: Sequence[int], early_shape: Sequence[int] | None = None) -> int:
    """Bytes of one record without the ``.npy`` header."""
    return entry_dtype(embedding_shape, early_shape).itemsize


def _payload_crc(record: np.ndarray) -> int:
    """CRC-32 of the bytes after the 24-byte prefix of a ``(1,)`` record array."""
    raw = record.view(np.uint8).reshape(-1)
    return zlib.crc32(raw[RECORD_PREFIX_BYTES:]) & 0xFFFFFFFF


def save_entry(path: str, embedding: np.ndarray | torch.Tensor,
               input_size: Sequence[int], original_size: Sequence[int],
               early: np.ndarray | torch.Tensor | None = None) -> int:
    """Write one cache record atomically (temp file + rename).

    Args:
        path: Destination ``<cache_dir>/<name>.npy``.
        embedding: ``(256, h', w')`` float (any float dtype; stored float16).
        input_size: ``(h, w)`` after SAM's resize, SAM input frame.
        original_size: ``(H, W)`` of the original image.
        early: ``(h', w', C)`` early ViT block output or ``None``.

    Returns:
        int: Size of the written file in bytes.

    Raises:
        ValueError: When the values are not finite in float16 (overflow) or a
            shape is wrong; nothing is written then.
    """
    emb = _as_numpy(embedding)
    if emb.ndim != 3:
        raise ValueError(f'embedding must be (C, h, w), got shape {emb.shape} for {path}')
    early_np = None if early is None else _as_numpy(early)
    if early_np is not None and early_np.ndim != 3:
        raise ValueError(f'early features must be (h, w, C), got shape {early_np.shape} for {path}')
    record = np.zeros(1, dtype=entry_dtype(emb.shape, None if early_np is None else early_np.shape))
    record['input_size'][0] = [int(v) for v in input_size]
    record['original_size'][0] = [int(v) for v in original_size]
    with np.errstate(over='ignore'):
        record['embedding'][0] = emb
        if early_np is not None:
            record['early'][0] = early_np
    if not np.isfinite(record['embedding'][0]).all() or (
            early_np is not None and not np.isfinite(record['early'][0]).all()):
        raise ValueError(f'non-finite values in the float16 embedding for {path} '
                         '(float16 overflow or NaN from the encoder)')
    record['crc32'][0] = _payload_crc(record)
    with atomic_write(path) as tmp:
        with open(tmp, 'wb') as f:
            np.save(f, record, allow_pickle=False)
        size = os.path.getsize(tmp)
    return size


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def load_entry(path: str, mmap: bool = True) -> dict:
    """Open one record.

    Args:
        path: ``<cache_dir>/<name>.npy``.
        mmap: Memory-map the file (default) instead of reading it.

    Returns:
        dict: ``embedding`` (256, h', w') float16 (memmap view when ``mmap``),
        ``early`` (h', w', C) float16 or ``None``, ``input_size`` ``(h, w)`` and
        ``original_size`` ``(H, W)`` as int tuples.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When it is not a cache record (names the file).
    """
    try:
        rec = np.load(path, mmap_mode='r' if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f'SAM embedding cache entry {path} is unreadable ({exc}); rerun '
                         'tools/cache_sam_embeddings.py (it recomputes bad entries after '
                         '--verify lists them, or use --overwrite)') from exc
    names = rec.dtype.names or ()
    if rec.shape != (1,) or 'embedding' not in names or 'input_size' not in names:
        raise ValueError(f'{path} is not a SAM embedding cache record (dtype {rec.dtype}, '
                         f'shape {rec.shape})')
    return dict(embedding=rec['embedding'][0],
                early=rec['early'][0] if 'early' in names else None,
                input_size=tuple(int(v) for v in rec['input_size'][0]),
                original_size=tuple(int(v) for v in rec['original_size'][0]))


def read_entry_header(path: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Parse the ``.npy`` header of a record without reading the data.

    Returns:
        tuple: ``(shape, dtype, data_offset)``.

    Raises:
        ValueError: When the header is not a valid ``.npy`` header.
    """
    with open(path, 'rb') as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f'{path}: unsupported .npy version {version}')
        offset = f.tell()
    return tuple(shape), dtype, offset


def check_entry(path: str, expected_dtype: np.dtype | None = None, full: bool = True) -> str | None:
    """Check one record; return the reason it is bad or ``None`` when it is good.

    Args:
        path: Record file.
        expected_dtype: Dtype the manifest promises (``None``: any record dtype).
        full: Also read the data: CRC-32, finite values, sane sizes. ``False`` only
            checks the header and the file size (used to skip entries on resume).

    Returns:
        str | None: A short reason (``'missing'``, ``'truncated: ...'``,
        ``'crc mismatch'``...) or ``None``.
    """
    if not osp.isfile(path):
        return 'missing'
    try:
        shape, dtype, offset = read_entry_header(path)
    except (OSError, ValueError, EOFError) as exc:
        return f'bad header: {exc}'
    if shape != (1,) or dtype.names is None or 'embedding' not in dtype.names:
        return f'not a cache record (dtype {dtype}, shape {shape})'
    if expected_dtype is not None and dtype != expected_dtype:
        return f'dtype {dtype} differs from the manifest ({expected_dtype})'
    size = osp.getsize(path)
    if size != offset + dtype.itemsize:
        return f'truncated or padded: {size} bytes, expected {offset + dtype.itemsize}'
    if not full:
        return None
    try:
        rec = np.load(path, mmap_mode='r', allow_pickle=False)
        crc = _payload_crc(rec)
        if crc != int(rec['crc32'][0]):
            return 'crc mismatch (data corrupted)'
        ins = rec['input_size'][0]
        org = rec['original_size'][0]
        if (ins <= 0).any() or (org <= 0).any():
            return f'bad sizes: input_size {ins.tolist()}, original_size {org.tolist()}'
    except (OSError, ValueError) as exc:
        return f'unreadable: {exc}'
    return None


class EmbeddingStore:
    """Read-only access to a SAM embedding cache folder, memory mapped.

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
        if manifest.get('format_version') != EMBEDDING_FORMAT_VERSION:
            raise ValueError(
                f'{root} has embedding format version {manifest.get("format_version")}, this '
                f'code reads {EMBEDDING_FORMAT_VERSION}; recompute it with '
                'tools/cache_sam_embeddings.py --overwrite')
        self.manifest = manifest
        key = manifest['key']
        self.embedding_shape: tuple[int, ...] = tuple(key['embedding_shape'])
        early = key.get('early_shape')
        self.early_shape: tuple[int, ...] | None = None if early is None else tuple(early)
        self.img_size = int(key.get('img_size') or 16 * self.embedding_shape[-1])
        self.dtype = entry_dtype(self.embedding_shape, self.early_shape)

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

    def get(self, name: str) -> dict:
        """One image's entry, memory mapped.

        Args:
            name: Image id (e.g. ``'2007_000032'``).

        Returns:
            dict: ``embedding`` (256, h', w') float16 memmap, ``early`` (h', w', C)
            float16 memmap or ``None``, ``input_size`` ``(h, w)`` (SAM input frame,
            before padding) and ``original_size`` ``(H, W)``.

        Raises:
            KeyError: When the image is not in the cache (names the file and the tool).
            ValueError: When the entry is unreadable or of another shape than the manifest.
        """
        path = self.path(name)
        try:
            entry = load_entry(path, mmap=True)
        except FileNotFoundError:
            raise KeyError(f'image {name!r} is not in the SAM embedding cache ({path} missing); '
                           'run tools/cache_sam_embeddings.py for the split that holds it'
                           ) from None
        if entry['embedding'].shape != self.embedding_shape or (
                (entry['early'] is None) != (self.early_shape is None)):
            raise ValueError(f'{path}: entry shape {entry["embedding"].shape} does not match the '
                             f'manifest ({self.embedding_shape}, early {self.early_shape}); '
                             'run the cache tool with --verify')
        return entry

    def get_batch(self, names: Sequence[str], device: str | torch.device = 'cpu',
                  with_early: bool = True) -> ImageFeatures:
        """Entries of several images as :class:`~s2c.structures.ImageFeatures` on ``device``.

        The float16 data is stacked on the CPU, moved to ``device`` and converted
        to float32 there (half the transfer of float32).

        Args:
            names: ``B`` image ids (repeats allowed).
            device: Target device.
            with_early: Also read the early features (when the cache has them).

        Returns:
            ImageFeatures: ``embeddings`` (B, 256, h', w') float32, ``early``
            (B, h', w', C) float32 or ``None``, ``input_sizes`` / ``original_sizes``
            (B, 2) long, ``img_size``.
        """
        device = torch.device(device)
        entries = [self.get(n) for n in names]

        def stack(key: str, shape: tuple[int, ...]) -> torch.Tensor:
            arr = np.stack([e[key] for e in entries]) if entries else np.zeros((0, *shape),
                                                                                np.float16)
            return torch.from_numpy(arr).to(device, non_blocking=True).float()

        def sizes(key: str) -> torch.Tensor:
            return torch.tensor([e[key] for e in entries], dtype=torch.long,
                                device=device).reshape(-1, 2)

        early = None
        if with_early and self.early_shape is not None:
            early = stack('early', self.early_shape)
        return ImageFeatures(embeddings=stack('embedding', self.embedding_shape), early=early,
                             input_sizes=sizes('input_size'),
                             original_sizes=sizes('original_size'), img_size=self.img_size)
