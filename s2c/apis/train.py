"""Training entry point: Config -> MMEngine Runner -> train."""
from __future__ import annotations

from mmengine.config import Config
from mmengine.runner import Runner

from s2c.caches.preflight import check_caches
from s2c.engine import WeightsOnlyCheckpointHook
from s2c.registry import RUNNERS


def train(cfg: Config, cache_cli_args: str = '') -> Runner:
    """Build the runner from ``cfg`` and train.

    Before the runner is built, configs that need SAM caches are checked by
    :func:`s2c.caches.check_caches` (a missing or incomplete cache stops the run
    with the command that builds it); CPM checks its back-end against the
    embedding cache when the model is built, also before iteration 1.

    Args:
        cfg: A config from :func:`~s2c.apis.build_train_config`.
        cache_cli_args: Arguments repeated in the cache-building command of a
            missing-cache error (``--data-root ...``, ``--cfg-options ...``).

    Returns:
        Runner: The runner after training (``runner.iter``, ``runner.message_hub``...).
    """
    check_caches(cfg, cache_cli_args)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('WeightsOnlyCheckpointHook', 's2c.WeightsOnlyCheckpointHook',
                                 WeightsOnlyCheckpointHook)
               for h in hooks):
        # Scoped name: also found from another default scope (mmseg configs).
        hooks.append(dict(type='s2c.WeightsOnlyCheckpointHook'))  # --resume under torch >= 2.6
    cfg.custom_hooks = hooks
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    return runner
