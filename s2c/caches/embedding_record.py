"""One SAM embedding cache record: its dtype, int8 quantisation, writing, reading, checking.

The format itself (fields, sizes, the two storage dtypes) is documented in
:mod:`s2c.caches.embedding_store`, which also holds the reader of a whole cache
folder. Storage dtypes (``sam_embeddings.dtype`` in the config):

- ``'float16'`` (format version 1): the float32 values rounded to float16;
- ``'int8'`` (format version 2): symmetric per-channel int8, ``q = round(x / s)``
  clipped to ``[-127, 127]`` with ``s = max|x| / 127`` over each channel (float32;
  the embedding's channels are axis 0, the early features' the last axis);
  ``x' = q * s`` differs from ``x`` by at most ``s / 2``.
"""
from __future__ import annotations

import io
import os
import os.path as osp
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from s2c.utils.fileio import atomic_write

#: Storage dtype -> manifest ``format_version`` of its records (float16 caches made before
#: int8 existed stay valid: version 1).
FORMAT_VERSIONS = {'float16': 1, 'int8': 2}
EMBEDDING_DTYPES = tuple(FORMAT_VERSIONS)
#: Format version of the float16 records (the default).
EMBEDDING_FORMAT_VERSION = FORMAT_VERSIONS['float16']
#: Bytes before the payload of a record (input_size, original_size, crc32, reserved).
RECORD_PREFIX_BYTES = 24
#: Largest magnitude of a quantised value (symmetric: -127..127, -128 unused).
INT8_MAX = 127


def check_storage_dtype(dtype: str | None) -> str:
    """``dtype`` (``None``: ``'float16'``) if it is a storage dtype of the cache.

    Raises:
        ValueError: Naming the config key and the allowed values.
    """
    dtype = 'float16' if dtype is None else str(dtype)
    if dtype not in FORMAT_VERSIONS:
        raise ValueError(f'sam_embeddings.dtype must be one of {list(EMBEDDING_DTYPES)}, got '
                         f'{dtype!r}')
    return dtype


def entry_dtype(embedding_shape: Sequence[int], early_shape: Sequence[int] | None = None,
                dtype: str = 'float16') -> np.dtype:
    """The structured dtype of one cache record.

    Args:
        embedding_shape: ``(256, h', w')``.
        early_shape: ``(h', w', C)`` or ``None`` when early features are not stored.
        dtype: Storage dtype, ``'float16'`` or ``'int8'``.

    Returns:
        np.dtype: Packed little-endian structured dtype (see :mod:`s2c.caches.embedding_store`).

    Raises:
        ValueError: For an unknown ``dtype``.
    """
    dtype = check_storage_dtype(dtype)
    emb = tuple(int(s) for s in embedding_shape)
    early = None if early_shape is None else tuple(int(s) for s in early_shape)
    fields = [('input_size', '<i4', (2,)), ('original_size', '<i4', (2,)), ('crc32', '<u4'),
              ('reserved', '<u4')]
    if dtype == 'float16':
        fields.append(('embedding', '<f2', emb))
        if early is not None:
            fields.append(('early', '<f2', early))
        return np.dtype(fields)
    # int8: the float32 scales first (4-byte aligned), then the int8 values
    fields.append(('embedding_scale', '<f4', (emb[0],)))
    if early is not None:
        fields.append(('early_scale', '<f4', (early[-1],)))
    fields.append(('embedding', 'i1', emb))
    if early is not None:
        fields.append(('early', 'i1', early))
    return np.dtype(fields)


def entry_nbytes(embedding_shape: Sequence[int], early_shape: Sequence[int] | None = None,
                 dtype: str = 'float16') -> int:
    """Bytes of one record without the ``.npy`` header."""
    return entry_dtype(embedding_shape, early_shape, dtype).itemsize


def entry_file_nbytes(embedding_shape: Sequence[int], early_shape: Sequence[int] | None = None,
                      dtype: str = 'float16') -> int:
    """Exact size of one entry file: the ``.npy`` header (as :func:`numpy.save` writes it)
    plus the record."""
    rec_dtype = entry_dtype(embedding_shape, early_shape, dtype)
    header = dict(descr=np.lib.format.dtype_to_descr(rec_dtype), fortran_order=False, shape=(1,))
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # pragma: no cover - a header over 64 KiB (never for these records)
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return len(buf.getvalue()) + rec_dtype.itemsize


def record_storage_dtype(rec_dtype: np.dtype) -> str:
    """``'float16'`` or ``'int8'``: the storage dtype of a record dtype (by its fields)."""
    return 'int8' if 'embedding_scale' in (rec_dtype.names or ()) else 'float16'


def quantize_per_channel(x: np.ndarray | torch.Tensor, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 quantisation.

    Args:
        x: Float array (any float dtype; computed in float64 against the float32 scale).
        axis: The channel axis (0 for the ``(256, h', w')`` embedding, -1 for the
            ``(h', w', C)`` early features).

    Returns:
        tuple: ``q`` int8 of ``x``'s shape in ``[-127, 127]`` and ``scale`` ``(C,)``
        float32 with ``scale = max|x| / 127`` per channel (0 for an all-zero channel,
        whose ``q`` is 0); ``|x - q * scale| <= scale / 2``.

    Raises:
        ValueError: When ``x`` has non-finite values.
    """
    x = _as_numpy(x)
    if not np.isfinite(x).all():
        raise ValueError('non-finite values cannot be quantised (NaN or inf from the encoder)')
    axis = axis % x.ndim
    reduce = tuple(i for i in range(x.ndim) if i != axis)
    scale = (np.abs(x).max(axis=reduce).astype(np.float32) / np.float32(INT8_MAX)).astype(
        np.float32)
    shape = [1] * x.ndim
    shape[axis] = -1
    safe = np.where(scale > 0, scale, np.float32(1)).astype(np.float64).reshape(shape)
    q = np.clip(np.rint(x.astype(np.float64) / safe), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """``q * scale`` in float32, ``scale`` broadcast along ``axis`` (inverse of
    :func:`quantize_per_channel`, up to the rounding)."""
    shape = [1] * q.ndim
    shape[axis % q.ndim] = -1
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32).reshape(shape)


def _payload_crc(record: np.ndarray) -> int:
    """CRC-32 of the bytes after the 24-byte prefix of a ``(1,)`` record array."""
    raw = record.view(np.uint8).reshape(-1)
    return zlib.crc32(raw[RECORD_PREFIX_BYTES:]) & 0xFFFFFFFF


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def save_entry(path: str, embedding: np.ndarray | torch.Tensor,
               input_size: Sequence[int], original_size: Sequence[int],
               early: np.ndarray | torch.Tensor | None = None, dtype: str = 'float16') -> int:
    """Write one cache record atomically (temp file + rename).

    Args:
        path: Destination ``<cache_dir>/<name>.npy``.
        embedding: ``(256, h', w')`` float (any float dtype; stored as ``dtype``).
        input_size: ``(h, w)`` after SAM's resize, SAM input frame.
        original_size: ``(H, W)`` of the original image.
        early: ``(h', w', C)`` early ViT block output or ``None``.
        dtype: Storage dtype, ``'float16'`` (default) or ``'int8'`` (per-channel scales).

    Returns:
        int: Size of the written file in bytes.

    Raises:
        ValueError: When the values are not finite (for float16: after the cast,
            i.e. overflow) or a shape is wrong; nothing is written then.
    """
    emb = _as_numpy(embedding)
    if emb.ndim != 3:
        raise ValueError(f'embedding must be (C, h, w), got shape {emb.shape} for {path}')
    early_np = None if early is None else _as_numpy(early)
    if early_np is not None and early_np.ndim != 3:
        raise ValueError(f'early features must be (h, w, C), got shape {early_np.shape} for {path}')
    record = np.zeros(1, dtype=entry_dtype(emb.shape, None if early_np is None else early_np.shape,
                                           dtype))
    record['input_size'][0] = [int(v) for v in input_size]
    record['original_size'][0] = [int(v) for v in original_size]
    if record_storage_dtype(record.dtype) == 'int8':
        try:
            record['embedding'][0], record['embedding_scale'][0] = quantize_per_channel(emb, 0)
            if early_np is not None:
                record['early'][0], record['early_scale'][0] = quantize_per_channel(early_np, -1)
        except ValueError as exc:
            raise ValueError(f'{exc} for {path}') from None
    else:
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


def load_entry(path: str, mmap: bool = True) -> dict:
    """Open one record as it is stored (float16 values, or int8 values and their scales).

    Args:
        path: ``<cache_dir>/<name>.npy``.
        mmap: Memory-map the file (default) instead of reading it.

    Returns:
        dict: ``dtype`` (``'float16'`` / ``'int8'``), ``embedding`` (256, h', w')
        float16 or int8 (memmap views when ``mmap``), ``early`` (h', w', C) or
        ``None``, ``embedding_scale`` ``(256,)`` / ``early_scale`` ``(C,)`` float32
        (``None`` for float16), ``input_size`` ``(h, w)`` and ``original_size``
        ``(H, W)`` as int tuples. :func:`dequantize` turns int8 values into floats.

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
    return dict(dtype=record_storage_dtype(rec.dtype), embedding=rec['embedding'][0],
                early=rec['early'][0] if 'early' in names else None,
                embedding_scale=rec['embedding_scale'][0] if 'embedding_scale' in names else None,
                early_scale=rec['early_scale'][0] if 'early_scale' in names else None,
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
        expected_dtype: Record dtype the manifest promises (``None``: any record dtype);
            a float16 record in an int8 cache (or the reverse) is bad.
        full: Also read the data: CRC-32, sane sizes, finite non-negative int8
            scales. ``False`` only checks the header and the file size (used to skip
            entries on resume).

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
        for field in ('embedding_scale', 'early_scale'):
            if field in dtype.names:
                scale = np.asarray(rec[field][0])
                if not (np.isfinite(scale).all() and (scale >= 0).all()):
                    return f'bad {field}: not finite and >= 0'
    except (OSError, ValueError) as exc:
        return f'unreadable: {exc}'
    return None
