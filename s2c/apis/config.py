"""Turning a config file + command-line options into a ready-to-run Config."""
from __future__ import annotations

import argparse
import os
import os.path as osp
from collections.abc import MutableMapping, MutableSequence
from typing import Any

import torch
from mmengine.config import Config, DictAction

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _reroot(obj: Any, olds: list[str], new: str) -> Any:
    """``obj`` with every string path equal to one of ``olds`` or under it moved to ``new``.

    ``olds`` (longest first) and ``new`` are given without a trailing ``/``; a
    string is moved at most once, by the longest root it lies under.
    """
    if isinstance(obj, str):
        for old in olds:
            if obj.rstrip('/') == old:
                return new
            if obj.startswith(old + '/'):
                return new + obj[len(old):]
        return obj
    if isinstance(obj, MutableMapping):
        for key in list(obj.keys()):
            obj[key] = _reroot(obj[key], olds, new)
    elif isinstance(obj, MutableSequence):
        for i, value in enumerate(obj):
            obj[i] = _reroot(value, olds, new)
    elif isinstance(obj, tuple):
        return type(obj)(_reroot(v, olds, new) for v in obj)
    return obj


def set_data_root(cfg: Config, data_root: str) -> None:
    """Move a config to a dataset stored at ``data_root`` (the ``--data-root`` shortcut).

    Every dataloader's dataset gets ``data_root``, and every path of the config
    that lies under the config's ``data_root`` or a dataloader's previous
    ``data_root`` (the SAM cache folders that configs derive from it, e.g.
    ``model.cpm.embedding_dir = data_root + '/sam_embeddings/vit_h'``) is moved
    along with it; paths elsewhere are kept.

    Args:
        cfg: Config to modify in place.
        data_root: New dataset root (e.g. ``.../VOCdevkit/VOC2012``).
    """
    old_roots = {cfg.get('data_root')}
    for key in DATALOADER_KEYS:
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        old_roots.add(dataset.get('data_root'))
    olds = sorted({r.rstrip('/') for r in old_roots if isinstance(r, str) and r.strip('/')},
                  key=len, reverse=True)
    _reroot(cfg._cfg_dict, olds, data_root.rstrip('/') or data_root)
    cfg.data_root = data_root
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader is not None and loader.get('dataset') is not None:
            loader['dataset']['data_root'] = data_root


def load_config(config: str, *, cfg_options: dict | None = None,
                data_root: str | None = None) -> Config:
    """``Config.fromfile`` + ``--cfg-options`` + ``--data-root``, as every tool loads configs.

    Raises:
        FileNotFoundError: When ``config`` does not exist.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} not found')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    return cfg


def build_train_config(config: str, *, work_dir: str | None = None,
                       resume: str | bool | None = None, amp: bool = False,
                       cfg_options: dict | None = None, launcher: str = 'none',
                       data_root: str | None = None) -> Config:
    """Load ``config`` and apply the options of ``tools/train.py``.

    Args:
        config: Config file path.
        work_dir: Output folder; default ``work_dirs/<config name>``.
        resume: ``None``/``False`` = fresh run; ``True``/``'auto'`` = resume from
            the latest checkpoint in ``work_dir``; a path = resume from that file.
        amp: Use mixed precision (``AmpOptimWrapper``; CUDA only).
        cfg_options: ``key.sub=value`` overrides (``--cfg-options``).
        launcher: ``none``, ``pytorch`` (torchrun) or ``slurm``.
        data_root: Shortcut that moves the config to this dataset root
            (:func:`set_data_root`).

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: When ``config`` or the resume checkpoint does not exist.
        RuntimeError: When ``amp`` is asked for without CUDA.
    """
    cfg = load_config(config, cfg_options=cfg_options, data_root=data_root)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    if amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a CUDA device (mixed precision is not used on CPU)')
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if resume in (True, 'auto'):
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'checkpoint to resume from {resume} not found')
        cfg.resume = True
        cfg.load_from = resume
    return cfg


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every training tool takes (``tools/train.py``, ``tools/train_seg.py``):
    ``config``, ``--work-dir``, ``--resume [CKPT]``, ``--amp``, ``--data-root``,
    ``--cfg-options``, ``--launcher`` and ``--local-rank`` (see :func:`build_train_config`)."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='output folder (default work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint of the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA)')
    parser.add_argument('--data-root', help='set data_root of every dataset')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_train_args(parser: argparse.ArgumentParser,
                     argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` for the launcher when torchrun did not set it."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args
