"""Training entry point: Config -> MMEngine Runner -> train."""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.runner import Runner

from s2c.caches.preflight import check_caches
from s2c.engine import CheckpointSafeRunner
from s2c.registry import RUNNERS
from s2c.utils.threads import set_num_threads


def train(cfg: Config, cache_cli_args: str = '') -> Runner:
    """Build the runner from ``cfg`` and train.

    Before the runner is built, configs that need SAM caches are checked by
    :func:`s2c.caches.check_caches` (a missing or incomplete cache stops the run
    with the command that builds it); CPM checks its back-end against the
    embedding cache when the model is built, also before iteration 1. Torch's intra-op
    threads are set from ``env_cfg.num_threads``, ``S2C_NUM_THREADS`` or the cores of this
    process shared among the node's processes and the data-loader workers
    (:func:`s2c.utils.threads.set_num_threads`).

    Args:
        cfg: A config from :func:`~s2c.apis.build_train_config`.
        cache_cli_args: Arguments repeated in the cache-building command of a
            missing-cache error (``--data-root ...``, ``--cfg-options ...``).

    Returns:
        Runner: The runner after training (``runner.iter``, ``runner.message_hub``...).

    Raises:
        NonFiniteLossError: A loss became NaN or infinite (see
            :class:`~s2c.engine.NonFiniteLossHook`; the message names the iteration and the
            last good checkpoint).
    """
    check_caches(cfg, cache_cli_args)
    workers = int((cfg.get('train_dataloader') or {}).get('num_workers', 0) or 0)
    threads = set_num_threads((cfg.get('env_cfg') or {}).get('num_threads'), workers)
    print(f'[s2c] torch intra-op threads: {threads} (env_cfg.num_threads or S2C_NUM_THREADS '
          'to change)')
    # Hooks every run gets unless the config lists them (scoped names: also found from another
    # default scope, e.g. mmseg configs): checkpoints that --resume can read under torch >= 2.6,
    # a non-finite loss stops the run instead of training on NaNs, and SSC without any
    # segment for a logging window is warned about.
    hooks = list(cfg.get('custom_hooks') or [])
    present = {_hook_name(h.get('type')) for h in hooks}
    for name in ('WeightsOnlyCheckpointHook', 'NonFiniteLossHook', 'EmptySegmentsHook'):
        if name not in present:
            hooks.append(dict(type='s2c.' + name))
    cfg.custom_hooks = hooks
    prepare_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else CheckpointSafeRunner.from_cfg(cfg)
    runner.train()
    return runner


def _hook_name(hook_type) -> str:
    """``'s2c.X'`` / ``'X'`` / the class ``X`` -> ``'X'``."""
    if isinstance(hook_type, type):
        return hook_type.__name__
    return str(hook_type).rsplit('.', 1)[-1]


def prepare_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` (torchrun) run without CUDA: join a ``gloo`` process group
    before the Runner is built (MMEngine's launcher always selects a CUDA device) and wrap
    the model in DDP without ``device_ids`` (CPU modules take none). No-op with CUDA, without
    a launcher, or when a process group exists.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
