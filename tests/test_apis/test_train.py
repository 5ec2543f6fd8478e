"""tools/train.py on the demo config: a short run writes a checkpoint; resume restores state."""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook

from s2c.apis import build_train_config, train
from s2c.registry import HOOKS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CAM_DEMO = 'configs/demo/cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py'
ITERS_PER_EPOCH = 5  # 16 demo training images, batch 3, drop_last


class Interrupted(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class InterruptAtIter(Hook):
    """Test hook: raise after ``at`` training iterations (simulates a killed job)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 >= self.at:
            raise Interrupted(f'interrupted at iteration {runner.iter + 1}')


@HOOKS.register_module(force=True)
class RecordStartState(Hook):
    """Test hook: remember iteration, lr and optimizer state when training starts."""

    records: list = []

    def before_train(self, runner):
        optim = runner.optim_wrapper.optimizer
        RecordStartState.records.append(dict(
            iter=runner.iter, epoch=runner.epoch, lr=optim.param_groups[0]['lr'],
            state={k: {n: t.clone() for n, t in v.items()}
                   for k, v in optim.state_dict()['state'].items()},
            scheduler=[s.state_dict() for s in runner.param_schedulers]))


def _cfg(demo_root, work_dir, max_epochs=2, extra=None):
    options = {
        'train_dataloader.batch_size': 3, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': max_epochs, 'train_cfg.val_interval': max_epochs,
        'param_scheduler.0.end': 2, 'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }
    options.update(extra or {})
    return build_train_config(osp.join(REPO, CAM_DEMO), work_dir=str(work_dir),
                              cfg_options=options, data_root=demo_root)


@pytest.mark.slow
def test_short_run_writes_checkpoint_and_metric(demo_root, tmp_path):
    cfg = _cfg(demo_root, tmp_path, max_epochs=1)
    runner = train(cfg)
    assert runner.iter == ITERS_PER_EPOCH
    assert osp.isfile(tmp_path / 'epoch_1.pth')
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert 'backbone.b7.conv_branch2b2.weight' in ckpt['state_dict']
    scalars = runner.message_hub.log_scalars
    assert 'train/loss_cls' in scalars and 'val/cam/mIoU' in scalars
    assert 0.0 <= scalars['val/cam/mIoU'].current() <= 100.0


@pytest.mark.slow
def test_resume_restores_iteration_optimizer_and_scheduler(demo_root, tmp_path):
    RecordStartState.records.clear()
    cfg = _cfg(demo_root, tmp_path, extra={'custom_hooks': [
        dict(type='InterruptAtIter', at=ITERS_PER_EPOCH + 2)]})
    with pytest.raises(Interrupted):
        train(cfg)
    saved = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu', weights_only=True)
    assert saved['meta']['iter'] == ITERS_PER_EPOCH

    cfg = _cfg(demo_root, tmp_path, extra={'custom_hooks': [dict(type='RecordStartState')]})
    cfg.resume = True
    runner = train(cfg)
    start = RecordStartState.records[-1]
    assert start['iter'] == ITERS_PER_EPOCH and start['epoch'] == 1
    assert runner.iter == 2 * ITERS_PER_EPOCH and runner.epoch == 2
    # MMEngine's PolyLR over 10 iterations reaches 0 at iteration 9: lr_t = lr (1 - t/9)^0.9
    assert start['lr'] == pytest.approx(0.05 * (1 - 5 / 9) ** 0.9, rel=1e-6)
    assert start['scheduler'][0]['last_step'] == saved['param_schedulers'][0]['last_step'] == 5
    saved_state = saved['optimizer']['state']
    assert len(start['state']) == len(saved_state) > 0
    assert set(start['state']) == set(saved_state)
    for idx, buffers in saved_state.items():
        assert torch.equal(start['state'][idx]['momentum_buffer'], buffers['momentum_buffer'])
    assert any(b['momentum_buffer'].abs().sum() > 0 for b in saved_state.values())


def test_train_cli_accepts_both_local_rank_spellings():
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool', osp.join(REPO, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    a = tool.parse_args([CAM_DEMO, '--local_rank', '1'])
    b = tool.parse_args([CAM_DEMO, '--local-rank', '2', '--resume'])
    assert a.local_rank == 1 and b.local_rank == 2 and b.resume == 'auto'
    # --cfg-options values written back into the suggested cache command parse again
    c = tool.parse_args([CAM_DEMO, '--cfg-options', 'model.cpm.scales=[0.5, 1.0]',
                         'a.b=(1,2)', 'c=None'])
    tokens = [tool.shlex.quote(f'{k}={tool.cfg_option_value(v)}')
              for k, v in c.cfg_options.items()]
    assert tokens == ["'model.cpm.scales=[0.5,1.0]'", "'a.b=(1,2)'", 'c=None']
    again = tool.parse_args([CAM_DEMO, '--cfg-options',
                             *tool.shlex.split(' '.join(tokens))])
    assert again.cfg_options == c.cfg_options
    cfg = build_train_config(osp.join(REPO, CAM_DEMO))
    assert cfg.work_dir == osp.join('work_dirs', 'cam_resnet38d-w0.125_1xb8-12e_demo-128x128')
