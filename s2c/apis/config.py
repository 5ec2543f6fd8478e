"""Turning a config file + command-line options into a ready-to-run Config."""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for tools)

DATALOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point every dataloader's dataset (and ``cfg.data_root``) at ``data_root``.

    Args:
        cfg: Config to modify in place.
        data_root: New dataset root (e.g. ``.../VOCdevkit/VOC2012``).
    """
    cfg.data_root = data_root
    for key in DATALOADER_KEYS:
        loader = cfg.get(key)
        if loader is not None and loader.get('dataset') is not None:
            loader['dataset']['data_root'] = data_root


def resolve_sam_settings(cfg: Config) -> None:
    """Fill the ``'auto'`` SAM-related values of a config in place.

    - ``train_dataloader.dataset.se_map_dir == 'auto'`` -> the SE-map cache folder
      of ``cfg.se_maps`` / ``cfg.sam`` (:func:`s2c.sam.cache_layout.se_map_cache_dir`);
    - ``model.cpm.embedding_dir == 'auto'`` -> the embedding cache folder
      (:func:`s2c.sam.cache_layout.embedding_cache_dir`);
    - ``model.cpm.backend`` gets ``model_type``/``checkpoint``/``device`` from ``cfg.sam``
      unless it sets them itself.
    """
    from s2c.sam.cache_layout import embedding_cache_dir, se_map_cache_dir
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    data_root = dataset.get('data_root', '')
    if dataset.get('se_map_dir') == 'auto':
        dataset['se_map_dir'] = osp.abspath(
            se_map_cache_dir(data_root, cfg.se_maps, cfg.get('sam')))
    cpm = cfg.get('model', {}).get('cpm')
    if cpm:
        backend = cpm.setdefault('backend', dict(type='sam'))
        for key in ('model_type', 'checkpoint', 'device'):
            if key not in backend and cfg.get('sam') is not None and key in cfg.sam:
                backend[key] = cfg.sam[key]
        if cpm.get('embedding_dir') == 'auto':
            cpm['embedding_dir'] = osp.abspath(embedding_cache_dir(
                data_root, cfg.sam, cfg.get('sam_embeddings', {})))


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
        data_root: Shortcut that sets every dataset's ``data_root``.

    Returns:
        Config: The merged config.

    Raises:
        FileNotFoundError: When ``config`` or the resume checkpoint does not exist.
        RuntimeError: When ``amp`` is asked for without CUDA.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config} not found')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    resolve_sam_settings(cfg)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    if amp:
        import torch
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
