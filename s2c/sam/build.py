"""Build SAM models (vit_b / vit_l / vit_h / tiny) and load official checkpoints strictly.

The models are assembled from segment-anything's own modules
(``segment_anything.modeling``), so official checkpoints load key for key:
``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``. SAM variants whose
checkpoints hold the whole SAM plus their own decoder parts (:data:`SAM_VARIANTS`:
HQ-SAM's 25 and RobustSAM's 89 extra ``mask_decoder.*`` tensors) are built with
their decoder (:class:`~s2c.sam.decoders.MaskDecoderHQ`,
:class:`~s2c.sam.decoders.MaskDecoderRobust`) and loaded just as strictly, so a
vanilla SAM file given for a variant is an error naming the missing keys. Architecture
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
import os.path as osp
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

from s2c.utils.checkpoint import load_state_dict_strict, read_state_dict
from s2c.utils.device import resolve_device
from s2c.utils.hashing import remembered_digest, state_dict_sha256

from .decoders import MaskDecoderHQ, MaskDecoderRobust
from .transforms import PIXEL_MEAN, PIXEL_STD

SAM_MODEL_TYPES = ('vit_b', 'vit_l', 'vit_h', 'tiny')
#: Model families with their own checkpoints: vanilla SAM, HQ-SAM (SysCV/sam-hq) and
#: RobustSAM (robustsam/RobustSAM).
SAM_VARIANTS = ('sam', 'hq_sam', 'robust_sam')
#: Decoder class of each variant that extends SAM's (built with ``vit_dim``).
_VARIANT_DECODERS = {'hq_sam': MaskDecoderHQ, 'robust_sam': MaskDecoderRobust}
#: Official checkpoint names, for messages.
_CHECKPOINT_NAMES = {'sam': 'sam_vit_h_4b8939.pth from the segment-anything release',
                     'hq_sam': 'sam_hq_vit_h.pth from the SysCV/sam-hq release',
                     'robust_sam': 'robustsam_checkpoint_h.pth from the RobustSAM release'}

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


def _check_variant(variant: str) -> str:
    if variant not in SAM_VARIANTS:
        raise ValueError(f'unknown SAM variant {variant!r}; choose one of {SAM_VARIANTS}')
    return variant


def _build_modules(model_type: str, variant: str = 'sam') -> Sam:
    spec = _check_model_type(model_type)
    _check_variant(variant)
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
    decoder_args = dict(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048,
                                      num_heads=8),
        transformer_dim=PROMPT_EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    if variant in _VARIANT_DECODERS:
        mask_decoder = _VARIANT_DECODERS[variant](vit_dim=spec['embed_dim'], **decoder_args)
    else:
        mask_decoder = MaskDecoder(**decoder_args)
    return Sam(image_encoder=image_encoder, prompt_encoder=prompt_encoder,
               mask_decoder=mask_decoder, pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))


def load_sam_checkpoint(model: Sam, checkpoint: str, *, strict: bool = True,
                        model_type: str = '?', variant: str = 'sam') -> None:
    """Load an official SAM checkpoint into ``model`` (in place), strictly by default.

    Args:
        model: A SAM built by :func:`build_sam`.
        checkpoint: Path of the state-dict file (``image_encoder.*``,
            ``prompt_encoder.*``, ``mask_decoder.*``).
        strict: When True, any missing or unexpected key is an error. When
            False they are logged as a warning and the rest is loaded.
        model_type: Only used in messages.
        variant: Only used in messages.

    Raises:
        FileNotFoundError: When the file does not exist (says where to get it).
        RuntimeError: When the file is truncated or not a torch state dict.
        KeyError: (strict) missing/unexpected keys, up to 10 of each listed with counts.
        ValueError: Shape mismatches (e.g. a vit_h file for a vit_b model).
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'{variant} checkpoint {checkpoint} does not exist; download it (e.g. '
            f'{_CHECKPOINT_NAMES.get(variant, "the official release")}) or fix the checkpoint '
            'path in the config.')
    state = read_state_dict(checkpoint, f'{variant} checkpoint')
    # RobustSAM's released files may carry DistributedDataParallel's 'module.' prefix
    # (its build_sam.py strips it key by key)
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    load_state_dict_strict(model, state, checkpoint, strict=strict,
                           hint=f'Is it a {model_type} {variant} checkpoint? Check model_type and '
                           'the back-end type against the file, or re-download it.')


def build_sam(model_type: str, checkpoint: str | None = None, *,
              device: str | torch.device | None = 'auto', strict: bool = True,
              seed: int | None = None, variant: str = 'sam') -> Sam:
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
            (PyTorch's default initialisation).
        device: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``, ...
        strict: Strict key matching when loading ``checkpoint``.
        seed: Random weights only: build after ``torch.manual_seed(seed)`` (every
            process builds the same model); ``None`` draws from the global RNG.
            With a checkpoint or a seed, the global RNG streams (CPU and CUDA) are
            left as they were, so building SAM inside a model does not change the
            model's own initialisation.
        variant: ``'sam'``, ``'hq_sam'`` or ``'robust_sam'`` (:data:`SAM_VARIANTS`):
            which decoder is built and which checkpoint is expected.

    Returns:
        Sam: The model in eval mode on ``device``, with ``requires_grad`` left
        on (callers wrap inference in ``torch.no_grad()``). Attributes
        ``s2c_model_type`` and ``s2c_checkpoint`` record what was built.

    Raises:
        ValueError: Unknown ``model_type`` or ``variant``, or a checkpoint of the wrong shapes.
        FileNotFoundError / RuntimeError / KeyError: See :func:`load_sam_checkpoint`.
    """
    if checkpoint is None and seed is None:
        model = _build_modules(model_type, variant)
    else:  # leave the caller's RNG streams (CPU and CUDA) exactly as they were
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            if checkpoint is None:
                torch.manual_seed(seed)
            model = _build_modules(model_type, variant)
    if checkpoint is not None:
        load_sam_checkpoint(model, checkpoint, strict=strict, model_type=model_type,
                            variant=variant)
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


_ENCODER_ID_MEMO: dict[tuple[str, int], str] = {}


def encoder_id(model_type: str, checkpoint: str | None = None, *, seed: int = 0,
               model: Sam | None = None) -> str:
    """Identity of a SAM image encoder: ``<model_type>-<16 hex digits>``.

    The digits are the start of the SHA-256 over the ``image_encoder.*``
    tensors (:func:`s2c.utils.hashing.state_dict_sha256`). An embedding cache
    records it, and every prompt back-end computes it from its own checkpoint,
    so a back-end accepts exactly the caches its encoder would have made: HQ-SAM
    ships SAM's frozen encoder (same id as vanilla SAM), RobustSAM may not.
    For a checkpoint file the digest is computed once and remembered next to
    the file (:func:`s2c.utils.hashing.remembered_digest`).

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Checkpoint file, or ``None`` for random weights.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.
        model: An already built SAM of those weights (saves building or reading one).

    Returns:
        str: e.g. ``'vit_h-1a2b3c4d5e6f7a8b'``.
    """
    _check_model_type(model_type)
    if checkpoint is not None:
        def digest_of(path: str) -> str:
            state = model.state_dict() if model is not None else \
                read_state_dict(path, 'SAM checkpoint')
            return state_dict_sha256(state, 'image_encoder.')

        digest = remembered_digest(checkpoint, 'image_encoder_sha256', digest_of)
        return f'{model_type}-{digest[:16]}'
    key = (model_type, int(seed))
    if key not in _ENCODER_ID_MEMO:
        if model is None:
            model = build_sam(model_type, None, device='cpu', seed=seed)
        _ENCODER_ID_MEMO[key] = state_dict_sha256(model.state_dict(), 'image_encoder.')
    return f'{model_type}-{_ENCODER_ID_MEMO[key][:16]}'
