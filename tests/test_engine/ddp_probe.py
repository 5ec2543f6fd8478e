"""Test helper imported by a torchrun training (custom_imports): each rank writes a checksum
of its parameters after training."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from s2c.registry import HOOKS


@HOOKS.register_module(force=True)
class ParamChecksumHook(Hook):
    """Write ``<work_dir>/params_rank<r>.txt``: the sum of every parameter, in full precision."""

    def after_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        total = sum(p.detach().double().sum() for p in model.parameters())
        with open(osp.join(runner.work_dir, f'params_rank{get_rank()}.txt'), 'w') as f:
            f.write(repr(float(total)))
        torch.distributed.barrier() if torch.distributed.is_initialized() else None
