"""Read (and, for tests, write) MXNet ``.params`` NDArray-list files without mxnet.

The ImageNet weights of PSA's wide ResNet-38 are distributed as the MXNet file
``ilsvrc-cls_rna-a1_cls1000_ep-0001.params``; mxnet itself no longer installs
on current Python, so this module parses MXNet's binary format directly and
renames the parameters to PSA/S2C's torch names (see
``tools/model_converters/resnet38d_mxnet2torch.py``).

File layout (apache/mxnet ``src/ndarray/ndarray.cc``: ``NDArray::Save/Load``
and the list ``NDArray::Save(fo, data, names)``), all little-endian::

    uint64 magic 0x112 (kMXAPINDArrayListMagic), uint64 reserved (0)
    uint64 n, then n NDArrays
    uint64 m (0 or n), then m names, each uint64 length + UTF-8 bytes

One NDArray starts with a ``uint32`` magic:

* ``0xF993FAC9`` (V2) / ``0xF993FACA`` (V3, NumPy shape semantics): int32
  storage type (0 = dense; sparse types are rejected), shape as int32 ndim +
  ndim x int64 dims (V2: ndim 0 = unset array, nothing follows; V3: ndim -1
  or a dim -1 = unset, ndim 0 = a scalar), context (int32 dev_type, int32
  dev_id), int32 type flag, raw C-order data.
* ``0xF993FAC8`` (V1): the same without storage type (ndim 0 = unset).
* anything else (legacy, pre-V1): the magic is ``ndim`` (uint32), followed by
  ndim x uint32 dims, context, type flag, data (ndim 0 = unset).

Type flags (mshadow): 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32,
5 int8, 6 int64.
"""
from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Mapping
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from s2c.utils import atomic_write

#: ``kMXAPINDArrayListMagic`` of ``ndarray.cc``.
LIST_MAGIC = 0x112
#: Per-array magics of ``ndarray.cc``.
NDARRAY_V1_MAGIC = 0xF993FAC8
NDARRAY_V2_MAGIC = 0xF993FAC9
NDARRAY_V3_MAGIC = 0xF993FACA

#: mshadow type flag -> little-endian numpy dtype.
TYPE_FLAG_TO_DTYPE: dict[int, np.dtype] = {
    0: np.dtype('<f4'),
    1: np.dtype('<f8'),
    2: np.dtype('<f2'),
    3: np.dtype('u1'),
    4: np.dtype('<i4'),
    5: np.dtype('i1'),
    6: np.dtype('<i8'),
}
_DTYPE_TO_TYPE_FLAG = {dt.newbyteorder('<'): flag for flag, dt in TYPE_FLAG_TO_DTYPE.items()}
_STORAGE_NAMES = {1: 'row_sparse', 2: 'csr'}
#: ``Context::kCPU`` (dev_type written by the writer).
_CPU_DEV_TYPE = 1
#: No real network has tensors of more dimensions; larger values mean a garbled file.
_MAX_NDIM = 32

_BN_PARAMS = {
    'gamma': 'weight',
    'beta': 'bias',
    'moving_mean': 'running_mean',
    'moving_var': 'running_var',
}
# res{stage}{a | b<i>}_{branch}_weight and bn{stage}{a | b<i>}_{branch}_{bn param}.
_BLOCK_RE = re.compile(
    r'^(?P<kind>res|bn)(?P<stage>\d+)(?:a|b(?P<index>\d+))_(?P<branch>branch[0-9a-z]+)_'
    r'(?P<param>weight|gamma|beta|moving_mean|moving_var)$')
_BN7_RE = re.compile(r'^bn7_(?P<param>gamma|beta|moving_mean|moving_var)$')
#: MXNet names dropped by the conversion (the ImageNet classifier).
DROPPED_NAMES = ('linear1000_weight', 'linear1000_bias')


class MXNetParamsError(ValueError):
    """A ``.params`` file that is not a readable dense MXNet NDArray list."""


class _Reader:
    """Sequential little-endian reads that report the file and byte offset on failure."""

    def __init__(self, f: BinaryIO, path: str, size: int) -> None:
        self.f = f
        self.path = path
        self.size = size
        self.pos = 0

    def fail(self, msg: str) -> MXNetParamsError:
        return MXNetParamsError(f'{self.path}: {msg}')

    def read_into(self, n: int, what: str) -> bytearray:
        if n > self.size - self.pos:
            raise self.fail(
                f'truncated at byte {self.size} while reading {what} ({n} bytes needed from byte '
                f'{self.pos}, {self.size - self.pos} left); re-download the file')
        buf = bytearray(n)
        got = self.f.readinto(buf)
        if got != n:
            raise self.fail(f'truncated at byte {self.pos + got} while reading {what}')
        self.pos += n
        return buf

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack('<' + fmt, self.read_into(struct.calcsize('<' + fmt), what))


def _read_shape(r: _Reader, magic: int, what: str) -> tuple[int, ...] | None:
    """Read the shape of one array; ``None`` for an unset (``is_none``) array."""
    start = r.pos
    if magic in (NDARRAY_V1_MAGIC, NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
        (ndim,) = r.unpack('i', f'ndim of {what}')
        if magic == NDARRAY_V3_MAGIC and ndim == -1:
            return None
        if not 0 <= ndim <= _MAX_NDIM:
            raise r.fail(f'not an MXNet NDArray list: ndim {ndim} of {what} at byte {start}')
        dims = r.unpack(f'{ndim}q', f'shape of {what}')
        if magic == NDARRAY_V3_MAGIC:
            if any(d == -1 for d in dims):
                return None
        elif ndim == 0:
            return None
    else:  # legacy: the magic is ndim, dims are uint32
        ndim = magic
        if ndim > _MAX_NDIM:
            raise r.fail(f'not an MXNet NDArray list: unknown array magic 0x{magic:08X} of '
                         f'{what} at byte {start - 4}')
        if ndim == 0:
            return None
        dims = r.unpack(f'{ndim}I', f'shape of {what}')
    if any(d < 0 for d in dims):
        raise r.fail(f'not an MXNet NDArray list: negative dim in shape {dims} of {what} '
                     f'at byte {start}')
    return tuple(int(d) for d in dims)


def _read_ndarray(r: _Reader, index: int) -> np.ndarray:
    what = f'array #{index}'
    start = r.pos
    (magic,) = r.unpack('I', f'magic of {what}')
    if magic in (NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
        (stype,) = r.unpack('i', f'storage type of {what}')
        if stype != 0:
            kind = _STORAGE_NAMES.get(stype, f'unknown type {stype}')
            raise r.fail(f'{what} (at byte {start}) has sparse storage ({kind}); only dense '
                         'arrays are supported: save it dense (tostype("default")) with mxnet')
    shape = _read_shape(r, magic, what)
    if shape is None:  # an unset NDArray: nothing else follows
        return np.empty((0,), dtype=np.float32)
    r.unpack('ii', f'context of {what}')  # dev_type, dev_id: the data is loaded on CPU anyway
    (flag,) = r.unpack('i', f'type flag of {what}')
    if flag not in TYPE_FLAG_TO_DTYPE:
        raise r.fail(f'{what} (at byte {start}) has unsupported dtype flag {flag}; supported: '
                     + ', '.join(f'{k}={v.name}' for k, v in TYPE_FLAG_TO_DTYPE.items()))
    dtype = TYPE_FLAG_TO_DTYPE[flag]
    count = int(np.prod(shape, dtype=np.int64))
    buf = r.read_into(count * dtype.itemsize, f'data of {what} (shape {shape}, {dtype.name})')
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder('='))
    return arr


def read_ndarray_list(path: str, progress: bool = False) -> dict[str, np.ndarray]:
    """Read a dense MXNet NDArray-list file (``mx.nd.save`` / ``*.params``).

    Args:
        path: The ``.params`` file.
        progress: Show a tqdm bar over the arrays.

    Returns:
        dict: name (as stored, e.g. ``'arg:conv1a_weight'``) -> array in C order
        with its stored shape and dtype, in file order. An unset (``is_none``)
        NDArray comes back as a zero-size float32 array of shape ``(0,)``.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        MXNetParamsError: "not an MXNet NDArray list" (wrong magic, garbled
            header), "truncated at byte N", sparse storage, unsupported dtype
            flag, missing or duplicate names. Messages name the file and offset.
    """
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        r = _Reader(f, path, size)
        if size < 16:
            raise r.fail(f'not an MXNet NDArray list: only {size} bytes (header needs 16)')
        magic, _reserved = r.unpack('QQ', 'header')
        if magic != LIST_MAGIC:
            raise r.fail(f'not an MXNet NDArray list: magic 0x{magic:X} at byte 0, expected '
                         f'0x{LIST_MAGIC:X}')
        (count,) = r.unpack('Q', 'array count')
        if count * 4 > size - r.pos:  # every array takes at least its 4-byte magic
            raise r.fail(f'truncated at byte {size} or not an MXNet NDArray list: {count} arrays '
                         f'announced at byte 16 but only {size - r.pos} bytes follow')
        arrays = [_read_ndarray(r, i)
                  for i in tqdm(range(count), desc='read MXNet arrays', disable=not progress)]
        (num_names,) = r.unpack('Q', 'name count')
        if num_names == 0 and count > 0:
            raise r.fail(f'the {count} arrays have no names (saved from a list, not a dict); '
                         'a parameter file needs names')
        if num_names != count:
            raise r.fail(f'not an MXNet NDArray list: {num_names} names for {count} arrays '
                         f'(at byte {r.pos - 8})')
        names = []
        for i in range(num_names):
            (length,) = r.unpack('Q', f'length of name #{i}')
            raw = r.read_into(length, f'name #{i}')
            try:
                names.append(raw.decode('utf-8'))
            except UnicodeDecodeError:
                raise r.fail(f'not an MXNet NDArray list: name #{i} ending at byte {r.pos} is '
                             'not UTF-8') from None
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MXNetParamsError(f'{path}: duplicate array names {dupes}')
    return dict(zip(names, arrays))


def _shape_bytes(shape: tuple[int, ...], version: str) -> bytes:
    if version == 'legacy':
        if any(d > 0xFFFFFFFF for d in shape):
            raise ValueError(f'shape {shape} does not fit the legacy uint32 dims')
        return struct.pack(f'<I{len(shape)}I', len(shape), *shape)
    return struct.pack(f'<i{len(shape)}q', len(shape), *shape)


def write_ndarray_list(path: str, arrays: Mapping[str, np.ndarray], version: str = 'v2') -> None:
    """Write ``arrays`` as an MXNet NDArray-list file (for tests; atomic).

    The inverse of :func:`read_ndarray_list`: every array is stored dense, on
    context ``cpu(0)``, in C order.

    Args:
        path: Destination file.
        arrays: name -> array; dtypes of :data:`TYPE_FLAG_TO_DTYPE`.
        version: Per-array format: ``'v3'``, ``'v2'`` (what mxnet >= 1.0
            writes), ``'v1'`` or ``'legacy'`` (pre-V1, uint32 dims).

    Raises:
        ValueError: Unknown ``version``, unsupported dtype, or a 0-d array in a
            format that cannot hold it (only ``'v3'`` has scalars).
    """
    magics = {'v3': NDARRAY_V3_MAGIC, 'v2': NDARRAY_V2_MAGIC, 'v1': NDARRAY_V1_MAGIC,
              'legacy': None}
    if version not in magics:
        raise ValueError(f'unknown version {version!r}; choose from {sorted(magics)}')
    chunks = [struct.pack('<QQQ', LIST_MAGIC, 0, len(arrays))]
    for name, arr in arrays.items():
        arr = np.asarray(arr)  # (np.ascontiguousarray would turn 0-d into 1-d)
        flag = _DTYPE_TO_TYPE_FLAG.get(arr.dtype.newbyteorder('<'))
        if flag is None:
            raise ValueError(f'array {name!r}: dtype {arr.dtype} has no MXNet type flag')
        if arr.ndim == 0 and version != 'v3':
            raise ValueError(f'array {name!r}: 0-d arrays need version "v3"')
        if magics[version] is not None:
            chunks.append(struct.pack('<I', magics[version]))
        if version in ('v2', 'v3'):
            chunks.append(struct.pack('<i', 0))  # dense storage
        chunks.append(_shape_bytes(arr.shape, version))
        chunks.append(struct.pack('<iii', _CPU_DEV_TYPE, 0, flag))
        chunks.append(arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes(order='C'))
    chunks.append(struct.pack('<Q', len(arrays)))
    for name in arrays:
        raw = name.encode('utf-8')
        chunks.append(struct.pack('<Q', len(raw)) + raw)
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        for chunk in chunks:
            f.write(chunk)


def strip_prefix(name: str) -> str:
    """Drop MXNet's ``'arg:'`` / ``'aux:'`` checkpoint prefix, if any."""
    return name.split(':', 1)[1] if name.startswith(('arg:', 'aux:')) else name


def mxnet_name_to_psa(name: str) -> str | None:
    """Map one MXNet ResNet-38 parameter name to PSA/S2C's torch name.

    The rule of ``convert_mxnet_to_torch`` in sangrockEG/S2C
    ``networks/resnet38d.py`` (same as PSA), written as patterns:

    * ``conv1a_weight`` -> ``conv1a.weight``;
    * ``res{s}a_{branch}_weight`` -> ``b{s}.conv_{branch}.weight`` and
      ``res{s}b{i}_{branch}_weight`` -> ``b{s}_{i}.conv_{branch}.weight``
      (e.g. ``res4b5_branch2b1_weight`` -> ``b4_5.conv_branch2b1.weight``);
    * ``bn{s}{a|b<i>}_{branch}_{p}`` -> ``b{s}[_{i}].bn_{branch}.{q}`` and
      ``bn7_{p}`` -> ``bn7.{q}`` with gamma/beta/moving_mean/moving_var ->
      weight/bias/running_mean/running_var;
    * ``linear1000_*`` (the ImageNet classifier) -> dropped.

    Args:
        name: MXNet name, with or without the ``arg:``/``aux:`` prefix.

    Returns:
        The torch name, or ``None`` for a dropped parameter.

    Raises:
        KeyError: For a name outside this scheme.
    """
    base = strip_prefix(name)
    if base == 'conv1a_weight':
        return 'conv1a.weight'
    if base in DROPPED_NAMES:
        return None
    m = _BN7_RE.match(base)
    if m:
        return f'bn7.{_BN_PARAMS[m["param"]]}'
    m = _BLOCK_RE.match(base)
    if m and (m['kind'] == 'res') == (m['param'] == 'weight'):
        block = f'b{m["stage"]}' + (f'_{m["index"]}' if m['index'] else '')
        if m['kind'] == 'res':
            return f'{block}.conv_{m["branch"]}.weight'
        return f'{block}.bn_{m["branch"]}.{_BN_PARAMS[m["param"]]}'
    raise KeyError(name)


def mxnet_to_psa_state_dict(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename MXNet ResNet-38 arrays to a PSA/S2C torch state dict.

    Values keep their shape (MXNet conv weights are ``(out, in, kh, kw)`` like
    torch's) and dtype, and are bit-identical to the source. The dict has no
    BatchNorm ``num_batches_tracked`` entries (PSA's converted file has none;
    :func:`s2c.utils.checkpoint.load_state_dict_strict` with
    ``optional=is_bn_counter`` tolerates their absence).

    Args:
        arrays: Output of :func:`read_ndarray_list` (names with or without
            ``arg:``/``aux:``).

    Returns:
        dict: torch name -> tensor, in the order of ``arrays``; the
        ``linear1000`` classifier is dropped.

    Raises:
        KeyError: Listing every name outside the ResNet-38 scheme, or names
            that map to the same torch key.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    sources: dict[str, str] = {}
    clashes: list[str] = []
    for name, arr in arrays.items():
        try:
            key = mxnet_name_to_psa(name)
        except KeyError:
            unknown.append(name)
            continue
        if key is None:
            continue
        if key in sources:
            clashes.append(f'{sources[key]} and {name} -> {key}')
            continue
        sources[key] = name
        arr = np.asarray(arr)
        out[key] = torch.from_numpy(arr if arr.flags.c_contiguous else arr.copy(order='C'))
    if unknown:
        raise KeyError(f'{len(unknown)} MXNet names are not ResNet-38 parameters: {unknown} '
                       '(is this the ilsvrc-cls_rna-a1_cls1000 ResNet-38 file?)')
    if clashes:
        raise KeyError(f'several MXNet names map to one torch key: {clashes}')
    return out


def compare_to_reference(state_dict: Mapping[str, torch.Tensor],
                         reference: Mapping[str, Iterable[int]]
                         ) -> tuple[list[str], list[str], list[str]]:
    """Compare a converted dict with a model's expected keys and shapes.

    Args:
        state_dict: Converted dict (name -> tensor).
        reference: name -> shape of the target model (without
            ``num_batches_tracked``).

    Returns:
        ``(missing, unexpected, shape_mismatches)``: names absent from
        ``state_dict``, names absent from ``reference``, and
        ``'name: file (…) vs model (…)'`` lines.
    """
    missing = [k for k in reference if k not in state_dict]
    unexpected = [k for k in state_dict if k not in reference]
    mismatched = [f'{k}: file {tuple(v.shape)} vs model {tuple(reference[k])}'
                  for k, v in state_dict.items()
                  if k in reference and tuple(v.shape) != tuple(reference[k])]
    return missing, unexpected, mismatched


def convert_params_file(src: str, dst: str,
                        reference: Mapping[str, Iterable[int]] | None = None,
                        progress: bool = True) -> dict[str, int]:
    """Convert an MXNet ResNet-38 ``.params`` file into a PSA-named torch ``.pth``.

    Args:
        src: MXNet NDArray-list file.
        dst: Output ``torch.save`` file (a plain dict name -> tensor, loadable
            with ``torch.load(weights_only=True)``), written atomically.
        reference: Optional name -> shape of the target model; any missing,
            unexpected or mis-shaped key is an error and nothing is written.
        progress: Show a tqdm bar while reading.

    Returns:
        dict: counts ``arrays`` (in ``src``), ``dropped``, ``tensors`` (written),
        ``elements`` (total values written).

    Raises:
        MXNetParamsError: Unreadable ``src``.
        KeyError: Unknown names, or a key-set mismatch with ``reference``
            (names listed).
        ValueError: Shape mismatches with ``reference``.
    """
    arrays = read_ndarray_list(src, progress=progress)
    state = mxnet_to_psa_state_dict(arrays)
    if reference is not None:
        missing, unexpected, mismatched = compare_to_reference(state, reference)
        if missing or unexpected:
            raise KeyError(f'{src}: converted keys do not match the model: '
                           f'{len(missing)} missing {missing}, '
                           f'{len(unexpected)} unexpected {unexpected}')
        if mismatched:
            raise ValueError(f'{src}: {len(mismatched)} shapes do not match the model '
                             f'(wrong --width?): {mismatched}')
    with atomic_write(dst) as tmp:
        torch.save(state, tmp)
    return {
        'arrays': len(arrays),
        'dropped': len(arrays) - len(state),
        'tensors': len(state),
        'elements': int(sum(t.numel() for t in state.values())),
    }
