"""Build SAM models (vit_b / vit_l / vit_h / tiny) and load official checkpoints strictly.

The models are assembled from segment-anything's own modules
(``segment_anything.modeling``), so official checkpoints load key for key:
``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``. Architecture
facts (embedding widths, depths, heads, global-attention blocks, window 14,
patch 16, decoder width 256 / MLP 2048 / 8 heads) are those of
``segment_anything/build_sam.py`` (PyPI segment-anything 1.0).

Precision: models run in fp32 by default. On CUDA an optional bf16 autocast
(:func:`sam_autocast`, config ``sam.autocast_dtype='bf16'``) roughly halves
encoder time and memory. fp16 is refused: fp16 ViT-H is known to overflow in
the image encoder and produce garbage masks.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import os.path as osp
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from s2c.utils import atomic_write, file_sha256, resolve_device

from .transforms import PIXEL_MEAN, PIXEL_STD

logger = logging.getLogger(__name__)

SAM_MODEL_TYPES = ('vit_b', 'vit_l', 'vit_h', 'tiny')

#: Encoder hyper-parameters per model type. ``tiny`` is a test/demo model (random
#: weights only): 2 ViT blocks (block 0 global, block 1 windowed), 256 px input,
#: so the embedding is 256 x 16 x 16.
SAM_SPECS: dict[str, dict[str, Any]] = {
    'vit_b': dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11),
                  img_size=1024),
    'vit_l': dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23),
                  img_size=1024),
    'vit_h': dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31),
                  img_size=1024),
    'tiny': dict(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(0, ), img_size=256),
}

PATCH_SIZE = 16
WINDOW_SIZE = 14
PROMPT_EMBED_DIM = 256

_MAX_LISTED_KEYS = 10


def _check_model_type(model_type: str) -> dict[str, Any]:
    if model_type not in SAM_SPECS:
        raise ValueError(f'unknown SAM model type {model_type!r}; choose one of {SAM_MODEL_TYPES}')
    return SAM_SPECS[model_type]


def global_attn_indexes(model_type: str) -> tuple[int, ...]:
    """Indices of the global-attention ViT blocks of a model type.

    The first one is the "early" block whose output HQ-SAM and RobustSAM use
    (vit_b 2, vit_l 5, vit_h 7; tiny 0). Source: segment-anything build_sam.py.

    Raises:
        ValueError: For an unknown model type.
    """
    return tuple(_check_model_type(model_type)['global_attn_indexes'])


def encoder_embed_dim(model_type: str) -> int:
    """Channel width of the ViT blocks (vit_b 768, vit_l 1024, vit_h 1280, tiny 64)."""
    return int(_check_model_type(model_type)['embed_dim'])


def _build_modules(model_type: str) -> Sam:
    spec = _check_model_type(model_type)
    img_size = spec['img_size']
    embedding_size = img_size // PATCH_SIZE
    image_encoder = ImageEncoderViT(
        depth=spec['depth'],
        embed_dim=spec['embed_dim'],
        img_size=img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=spec['num_heads'],
        patch_size=PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(spec['global_attn_indexes']),
        window_size=WINDOW_SIZE,
        out_chans=PROMPT_EMBED_DIM,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=PROMPT_EMBED_DIM,
        image_embedding_size=(embedding_size, embedding_size),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048,
                                      num_heads=8),
        transformer_dim=PROMPT_EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return Sam(image_encoder=image_encoder, prompt_encoder=prompt_encoder,
               mask_decoder=mask_decoder, pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))


def read_sam_state_dict(checkpoint: str) -> dict[str, torch.Tensor]:
    """Read a SAM checkpoint file into a state dict on the CPU.

    Uses ``torch.load(..., weights_only=True)`` (official SAM checkpoints are
    plain state dicts of tensors). A dict wrapping the state dict under
    ``'model'`` or ``'state_dict'`` is unwrapped.

    Args:
        checkpoint: Path of the ``.pth`` file.

    Returns:
        dict: Parameter name -> tensor.

    Raises:
        FileNotFoundError: When the file does not exist.
        RuntimeError: When the file is truncated, not a torch checkpoint, or
            holds no state dict (the message names the file and says to
            re-download it).
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'SAM checkpoint {checkpoint} does not exist; download it (e.g. '
            'sam_vit_h_4b8939.pth from the segment-anything release) or fix sam.checkpoint.')
    try:
        obj = torch.load(checkpoint, map_location='cpu', weights_only=True)
    except Exception as e:  # torch.load raises many types on corrupt files
        size = osp.getsize(checkpoint)
        raise RuntimeError(
            f'cannot read SAM checkpoint {checkpoint} ({size} bytes): {type(e).__name__}: {e}. '
            'The file is truncated or not a torch checkpoint; re-download it.') from e
    if isinstance(obj, Mapping):
        for key in ('model', 'state_dict'):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RuntimeError(
            f'SAM checkpoint {checkpoint} does not hold a state dict of tensors '
            f'(got {type(obj).__name__}); re-download the official checkpoint.')
    return dict(obj)


def _format_keys(keys: list[str]) -> str:
    shown = ', '.join(keys[:_MAX_LISTED_KEYS])
    more = f', ... (+{len(keys) - _MAX_LISTED_KEYS} more)' if len(keys) > _MAX_LISTED_KEYS else ''
    return f'{len(keys)}: [{shown}{more}]'


def load_sam_checkpoint(model: Sam, checkpoint: str, *, strict: bool = True,
                        model_type: str = '?') -> None:
    """Load ``checkpoint`` into ``model`` (in place), strictly by default.

    Args:
        model: A SAM built by :func:`build_sam`.
        checkpoint: Path of the state-dict file.
        strict: When True, any missing or unexpected key is an error. When
            False they are logged as a warning and the rest is loaded.
        model_type: Only used in messages.

    Raises:
        FileNotFoundError / RuntimeError: See :func:`read_sam_state_dict`.
        KeyError: (strict) missing/unexpected keys; the message lists up to 10
            of each with their counts.
        RuntimeError: Shape mismatches (e.g. a vit_h file for a vit_b model).
    """
    state = read_sam_state_dict(checkpoint)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        msg = (f'SAM checkpoint {checkpoint} does not match a {model_type} SAM: '
               f'missing keys {_format_keys(missing)}; unexpected keys {_format_keys(unexpected)}')
        if strict:
            raise KeyError(msg + '. Check sam.model_type against the file, or re-download it.')
        logger.warning(msg)
    bad_shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                  for k in own if k in state and state[k].shape != own[k].shape]
    if bad_shapes:
        raise RuntimeError(
            f'SAM checkpoint {checkpoint} has tensors of the wrong shape for a {model_type} SAM '
            f'({len(bad_shapes)}: {"; ".join(bad_shapes[:_MAX_LISTED_KEYS])}); '
            'is sam.model_type right?')
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def build_sam(model_type: str, checkpoint: str | None = None, *,
              device: str | torch.device | None = 'auto', strict: bool = True) -> Sam:
    """Build a SAM from segment-anything's modules and (optionally) load weights.

    Model types: ``vit_b``, ``vit_l``, ``vit_h`` (official architectures,
    1024 px input, embedding 256 x 64 x 64) and ``tiny`` (2 ViT blocks of width
    64, 256 px input, embedding 256 x 16 x 16; same prompt encoder and mask
    decoder as the official models) for tests and the CPU demo.

    Precision: the model is fp32. Use :func:`sam_autocast` for bf16 on CUDA;
    do not cast the model to fp16 (fp16 ViT-H is known to produce garbage).

    Args:
        model_type: One of :data:`SAM_MODEL_TYPES`.
        checkpoint: Official SAM state-dict file, or None for random weights
            (PyTorch's default initialisation; seed with ``torch.manual_seed``).
        device: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``, ...
        strict: Strict key matching when loading ``checkpoint``.

    Returns:
        Sam: The model in eval mode on ``device``, with ``requires_grad`` left
        on (callers wrap inference in ``torch.no_grad()``). Attributes
        ``s2c_model_type`` and ``s2c_checkpoint`` record what was built.

    Raises:
        ValueError: Unknown ``model_type``.
        FileNotFoundError / RuntimeError / KeyError: See
            :func:`load_sam_checkpoint`.
    """
    model = _build_modules(model_type)
    if checkpoint is not None:
        load_sam_checkpoint(model, checkpoint, strict=strict, model_type=model_type)
    model.s2c_model_type = model_type
    model.s2c_checkpoint = None if checkpoint is None else osp.abspath(checkpoint)
    return model.to(resolve_device(device)).eval()


def sam_autocast(device: str | torch.device, autocast_dtype: str | None = None
                 ) -> contextlib.AbstractContextManager:
    """Context manager for the optional reduced-precision SAM inference.

    Args:
        device: The device the model runs on.
        autocast_dtype: None (fp32, default) or ``'bf16'`` (CUDA only).

    Returns:
        A context manager (``torch.autocast`` or a no-op).

    Raises:
        ValueError: For ``'bf16'`` on a non-CUDA device, for ``'fp16'``
            (fp16 ViT-H produces garbage) and for unknown values.
    """
    if autocast_dtype is None:
        return contextlib.nullcontext()
    device = torch.device(device)
    if autocast_dtype in ('fp16', 'float16', 'half'):
        raise ValueError('fp16 SAM inference is not supported: fp16 ViT-H is known to produce '
                         "garbage masks; use autocast_dtype='bf16' on CUDA or None (fp32).")
    if autocast_dtype not in ('bf16', 'bfloat16'):
        raise ValueError(f"unknown sam.autocast_dtype {autocast_dtype!r}; use None or 'bf16'")
    if device.type != 'cuda':
        raise ValueError(f"sam.autocast_dtype='bf16' needs CUDA, but the device is {device}; "
                         'set autocast_dtype=None on the CPU.')
    return torch.autocast('cuda', dtype=torch.bfloat16)


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha_cache_dir() -> str:
    root = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(root, 's2c', 'sha256')


def _read_sha_record(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if rec.get('size') == size and rec.get('mtime_ns') == mtime_ns:
        return rec.get('sha256')
    return None


def _write_sha_record(path: str, record: dict[str, Any]) -> bool:
    try:
        with atomic_write(path) as tmp, open(tmp, 'w') as f:
            json.dump(record, f)
        return True
    except OSError:
        return False


def checkpoint_sha256(path: str) -> str:
    """SHA-256 of a checkpoint file, computed once and remembered.

    The digest is remembered in memory and on disk, keyed by the file's size
    and modification time (ns): first in a side file ``<path>.sha256`` (JSON),
    or, when the checkpoint's folder is not writable, in
    ``$XDG_CACHE_HOME/s2c/sha256/<sha1 of the absolute path>.json``
    (default ``~/.cache``). A changed file (size or mtime) is hashed again.

    Args:
        path: The checkpoint file.

    Returns:
        str: 64 hex digits.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
    """
    path = osp.abspath(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    side = path + '.sha256'
    user = osp.join(_sha_cache_dir(), hashlib.sha1(path.encode()).hexdigest() + '.json')
    digest = (_read_sha_record(side, st.st_size, st.st_mtime_ns)
              or _read_sha_record(user, st.st_size, st.st_mtime_ns))
    if digest is None:
        digest = file_sha256(path)
        record = dict(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest)
        if not _write_sha_record(side, record):
            _write_sha_record(user, record)
    _SHA_MEMO[key] = digest
    return digest
