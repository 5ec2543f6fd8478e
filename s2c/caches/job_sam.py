"""The SAM a cache job runs (the config's ``sam`` block), built once and described.

``sam = dict(model_type, checkpoint, device, autocast_dtype[, variant])`` says which
SAM makes the caches (the image encoder for the embeddings, the whole model for
SAM-based SE maps; ``variant``: ``'sam'`` by default, ``'hq_sam'`` / ``'robust_sam'``
to read those checkpoints). It is separate from the prompt back-end CPM decodes with
(``model.cpm.backend``): an embedding cache records its ``encoder_id`` and a
back-end accepts it only when its own checkpoint holds the same encoder.
"""
from __future__ import annotations

import logging
import os.path as osp
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.logging import print_log
from segment_anything.modeling import Sam

from s2c.sam.build import build_sam, encoder_id
from s2c.utils.hashing import checkpoint_sha256

#: Seed used to build SAM when ``sam.checkpoint`` is ``None`` (random weights, tests/demo);
#: prompt back-ends use the same default seed.
RANDOM_INIT_SEED = 0


def sam_block(cfg: Mapping) -> dict:
    """The config's ``sam`` block as a dict.

    Raises:
        KeyError: When the config has none (names the base configs that define it).
    """
    block = cfg.get('sam')
    if block is None:
        raise KeyError('the config has no `sam` block (see configs/_base_/sam/*.py)')
    return dict(block)


def build_job_sam(sam_cfg: Mapping, device: torch.device) -> tuple[Sam, dict[str, Any]]:
    """Build SAM once for a job and describe it for the manifest.

    With ``checkpoint=None`` the weights are random: the model is built after
    ``torch.manual_seed(RANDOM_INIT_SEED)`` (so every rank/process builds the
    same model) and a loud warning is logged.

    Args:
        sam_cfg: The ``sam`` block (``model_type``, ``checkpoint``, ``autocast_dtype``,
            optional ``variant``).
        device: Where the model runs.

    Returns:
        tuple: The model (eval, on ``device``) and its identity for manifest keys:
        ``model_type``, ``checkpoint_sha256``, ``random_init_seed``,
        ``autocast_dtype``, ``img_size``, ``encoder_id`` (and ``variant`` when it is
        not ``'sam'``, so that existing SAM caches keep their keys).

    Raises:
        FileNotFoundError: When the checkpoint does not exist.
    """
    model_type = sam_cfg['model_type']
    ckpt = sam_cfg.get('checkpoint')
    variant = sam_cfg.get('variant') or 'sam'
    if ckpt:
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'SAM checkpoint {ckpt} not found (sam.checkpoint in the '
                                    'config); download the official file or fix the path')
        sha, seed = checkpoint_sha256(ckpt), None
        sam = build_sam(model_type, ckpt, device=device, variant=variant)
    else:
        print_log(f'!!! sam.checkpoint is None: building {model_type!r} with RANDOM weights '
                  f'(torch seed {RANDOM_INIT_SEED}); its outputs are meaningless except for '
                  'tests and the demo !!!', logger='current', level=logging.WARNING)
        sha, seed = None, RANDOM_INIT_SEED
        sam = build_sam(model_type, None, device=device, seed=RANDOM_INIT_SEED, variant=variant)
    ident = dict(model_type=model_type, checkpoint_sha256=sha, random_init_seed=seed,
                 autocast_dtype=sam_cfg.get('autocast_dtype'),
                 img_size=int(sam.image_encoder.img_size),
                 encoder_id=encoder_id(model_type, ckpt or None, seed=RANDOM_INIT_SEED,
                                       model=None if ckpt else sam))
    if variant != 'sam':
        ident['variant'] = variant
    return sam, ident


def sam_info(sam_cfg: Mapping) -> dict:
    """Informational manifest entries: the checkpoint path (and the variant that read it), a
    warning for random weights."""
    info = dict(checkpoint_path=sam_cfg.get('checkpoint'))
    if (sam_cfg.get('variant') or 'sam') != 'sam':
        info['variant'] = sam_cfg['variant']
    if not sam_cfg.get('checkpoint'):
        info['warning'] = (f'RANDOM WEIGHTS: sam.checkpoint was None, model built after '
                           f'torch.manual_seed({RANDOM_INIT_SEED})')
    return info
