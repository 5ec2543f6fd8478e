"""A non-finite loss stops training with a one-line cause and the last good checkpoint, and
writes nothing; the skip option skips those optimiser steps and counts them."""
from __future__ import annotations

import hashlib
import math
import os.path as osp
import sys
from types import SimpleNamespace

import pytest
import torch

from s2c.apis import train
from s2c.engine import EmptySegmentsHook, NonFiniteLossError, NonFiniteLossHook
from s2c.engine.hooks.non_finite_loss_hook import non_finite_losses

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_apis'))
from test_train import _cfg  # noqa: E402  (the demo training config of the train tests)


def _sha(path) -> str:
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def test_non_finite_losses_picks_loss_keys_only():
    log = {'loss': torch.tensor(float('nan')), 'loss_cls': torch.tensor(0.5),
           'decode.loss_ce': torch.tensor(float('inf')), 'acc': float('nan'),
           'decode.acc_seg': torch.tensor(float('nan'))}
    bad = non_finite_losses(log)
    assert set(bad) == {'loss', 'decode.loss_ce'} and math.isnan(bad['loss'])
    with pytest.raises(ValueError, match='action'):
        NonFiniteLossHook(action='ignore')


@pytest.mark.slow
def test_nan_loss_stops_without_touching_the_last_good_checkpoint(demo_root, tmp_path):
    w = tmp_path / 'w'
    train(_cfg(demo_root, w, max_epochs=1))
    good = w / 'epoch_1.pth'
    digest = _sha(good)
    bad_cfg = _cfg(demo_root, w, max_epochs=1, extra={'optim_wrapper.optimizer.lr': 1e30})
    with pytest.raises(NonFiniteLossError,
                       match=r'non-finite loss at iteration \d+ \(epoch 1\): loss=.*'
                             r'no checkpoint of this state was written\. Last good checkpoint: '
                             r'.*epoch_1\.pth'):
        train(bad_cfg)
    assert _sha(good) == digest  # not overwritten by the NaN run


@pytest.mark.slow
def test_skip_action_skips_and_counts(demo_root, tmp_path):
    cfg = _cfg(demo_root, tmp_path / 'w', max_epochs=1, extra={
        'optim_wrapper.optimizer.lr': 1e30,
        'custom_hooks': [dict(type='NonFiniteLossHook', action='skip')]})
    runner = train(cfg)
    skipped = runner.message_hub.get_info('train/skipped_steps')
    assert runner.iter == 5 and 1 <= skipped <= 4  # the first step is finite, later ones not


def test_empty_segments_hook_warns_after_a_silent_window():
    hook = EmptySegmentsHook(interval=3)
    runner = SimpleNamespace(iter=0)
    coverage = [0.2, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0]
    for i, c in enumerate(coverage):
        runner.iter = i
        hook.after_train_iter(runner, i, outputs={'ssc_coverage': torch.tensor(c)})
    assert hook.warnings == 1  # iterations 2-4 had no segment; 7-8 are only two
    hook.after_train_iter(runner, 0, outputs={'loss_cls': torch.tensor(1.0)})  # no SSC: quiet
    assert hook.warnings == 1
