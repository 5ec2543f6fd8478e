"""Stop (or skip the step) when a loss is not finite, instead of training on NaN weights."""
from __future__ import annotations

import math
import os.path as osp
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from s2c.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """A training loss was NaN or infinite; the run stopped (no checkpoint of it written)."""


def non_finite_losses(log_vars: Mapping[str, Any]) -> dict[str, float]:
    """The loss entries (keys ``loss`` / ``loss_*`` / ``*.loss_*``) that are not finite."""
    bad = {}
    for key, value in log_vars.items():
        name = key.rsplit('.', 1)[-1]
        if not (name == 'loss' or name.startswith('loss_')):
            continue
        v = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) \
            else float(value)
        if not math.isfinite(v):
            bad[key] = v
    return bad


def last_checkpoint(work_dir: str) -> str | None:
    """The checkpoint named by ``<work_dir>/last_checkpoint`` (MMEngine's pointer), if any."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    return path or None


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Guard against non-finite losses (any ``loss_*``, and their sum ``loss``).

    ``action='stop'`` (default): at the first iteration whose loss is NaN or infinite the run
    raises :class:`NonFiniteLossError` naming the iteration, the non-finite losses and the
    last good checkpoint. The hook runs before the checkpoint hook, so the state after that
    iteration is never saved, and no existing checkpoint is overwritten.

    ``action='skip'``: the optimiser step of such an iteration is not taken (no backward, no
    update; the gradients are cleared), a warning names it, and the number of skipped steps
    is logged every time and reported at the end of training (``runner.message_hub`` key
    ``train/skipped_steps``).

    Args:
        action: ``'stop'`` or ``'skip'``.
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW) in after_train_iter

    def __init__(self, action: str = 'stop') -> None:
        if action not in ('stop', 'skip'):
            raise ValueError(f"action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.skipped = 0

    def before_train(self, runner) -> None:
        self.skipped = 0
        if self.action == 'skip':
            wrapper = runner.optim_wrapper
            original = wrapper.update_params

            def guarded(loss: torch.Tensor, *args, **kwargs):
                if torch.isfinite(loss.detach()).all():
                    return original(loss, *args, **kwargs)
                wrapper.zero_grad()
                self.skipped += 1
                runner.message_hub.update_info('train/skipped_steps', self.skipped)
                print_log(f'non-finite loss ({float(loss.detach().float().mean())}) at '
                          f'iteration {runner.iter + 1}: optimiser step skipped '
                          f'({self.skipped} so far)', logger='current', level=30)
                return None

            wrapper.update_params = guarded

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.action != 'stop' or not isinstance(outputs, Mapping):
            return
        bad = non_finite_losses(outputs)
        if not bad:
            return
        last = last_checkpoint(runner.work_dir)
        losses = ', '.join(f'{k}={v}' for k, v in bad.items())
        raise NonFiniteLossError(
            f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
            f'{losses}. Training stopped; no checkpoint of this state was written. Last good '
            f"checkpoint: {last or 'none saved yet'}. Lower the learning rate or check the "
            'data, then restart' + (f' (or --resume {last})' if last else '')
            + "; custom_hooks=[dict(type='NonFiniteLossHook', action='skip')] skips such "
            'steps instead.')

    def after_train(self, runner) -> None:
        if self.action == 'skip' and self.skipped:
            print_log(f'{self.skipped} optimiser step(s) were skipped for non-finite losses',
                      logger='current', level=30)
