"""Content hashes: files, state dicts, JSON-able settings; remembered per file.

Hashing a 2.5 GB SAM checkpoint takes seconds, so digests of files are
remembered in memory and on disk, keyed by the file's size and modification
time (ns): in a side file ``<path>.sha256`` (JSON) or, when the file's folder
is not writable, in ``$XDG_CACHE_HOME/s2c/sha256/<sha1 of the path>.json``
(default ``~/.cache``). A changed file (size or mtime) is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .fileio import atomic_write

_MEMO: dict[tuple[str, int, int, str], str] = {}


def jsonable(obj: Any) -> Any:
    """ConfigDicts, tuples and numpy/torch scalars as plain JSON values (dict keys sorted)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, 'item') and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    return obj


def short_hash(obj: Any, length: int = 8) -> str:
    """First ``length`` hex digits of the SHA-256 of ``obj`` as canonical JSON."""
    text = json.dumps(jsonable(obj), sort_keys=True, separators=(',', ':'), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: str, chunk_size: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in 4 MiB chunks.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor], prefix: str = '') -> str:
    """SHA-256 over the tensors whose key starts with ``prefix`` (names, dtypes, shapes, bytes).

    Keys are visited in sorted order, so the digest does not depend on the
    order of the dict or on the file that held it.
    """
    digest = hashlib.sha256()
    for key in sorted(k for k in state_dict if k.startswith(prefix)):
        t = state_dict[key].detach().cpu().contiguous()
        digest.update(f'{key}|{t.dtype}|{tuple(t.shape)}|'.encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _user_cache_dir() -> str:
    root = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(root, 's2c', 'sha256')


def _read_record(path: str, size: int, mtime_ns: int) -> dict:
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return {}
    if isinstance(rec, dict) and rec.get('size') == size and rec.get('mtime_ns') == mtime_ns:
        return rec
    return {}


def _write_record(path: str, record: dict[str, Any]) -> bool:
    try:
        with atomic_write(path) as tmp, open(tmp, 'w') as f:
            json.dump(record, f)
        return True
    except OSError:
        return False


def remembered_digest(path: str, name: str, compute: Callable[[str], str]) -> str:
    """A digest of a file, computed once per file version and remembered.

    Args:
        path: The file.
        name: Name of the digest in the record (``'sha256'``, ``'image_encoder_sha256'``).
        compute: ``compute(path) -> hex digest``, called when nothing valid is remembered.

    Returns:
        str: The digest.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
    """
    path = osp.abspath(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, name)
    if key in _MEMO:
        return _MEMO[key]
    side = path + '.sha256'
    user = osp.join(_user_cache_dir(), hashlib.sha1(path.encode()).hexdigest() + '.json')
    records = [_read_record(p, st.st_size, st.st_mtime_ns) for p in (side, user)]
    digest = next((r[name] for r in records if name in r), None)
    if digest is None:
        digest = compute(path)
        for target, old in ((side, records[0]), (user, records[1])):
            record = dict(old, path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)
            record[name] = digest
            if _write_record(target, record):
                break
    _MEMO[key] = digest
    return digest


def checkpoint_sha256(path: str) -> str:
    """SHA-256 of a checkpoint file (64 hex digits), remembered (see the module docstring).

    Raises:
        FileNotFoundError: When ``path`` does not exist.
    """
    return remembered_digest(path, 'sha256', file_sha256)
