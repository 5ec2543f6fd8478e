"""The stem shared by S2C's training forward and CPM's scale-1 CAM: one training step is
bit-identical with and without sharing (losses, gradients, CPM labels); the sharing is
refused or skipped where it would not be exact (BatchNorm in training mode, another precision)."""
from __future__ import annotations

import copy
import os.path as osp

import pytest
import torch
from mmengine.logging import MessageHub

from s2c.datasets import VOC12ClsDataset
from s2c.models.backbones.resnet38d import ResNet38d
from s2c.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


@pytest.fixture(scope='module')
def batch(demo_caches):
    ds_cfg = demo_caches.train_dataloader.dataset.copy()
    ds_cfg.pop('type')
    ds = VOC12ClsDataset(**ds_cfg)
    torch.manual_seed(0)
    items = [ds[i] for i in range(4)]
    return torch.stack([it['inputs'] for it in items]), [it['data_samples'] for it in items]


def _model_cfg(cfg, **cpm):
    """The demo model (1/8-width ResNet-38d) with S2C's frozen BatchNorm and dropout 0.2."""
    model = copy.deepcopy(cfg.model.to_dict())
    model['backbone'].update(freeze_bn=True, dropout=0.2)
    model['cpm'].update(start_epoch=0, **cpm)
    return model


def _train_step(model_cfg, state, batch, autocast_dtype=None):
    """One S2C training step (CPM active): losses, gradients, CPM labels, stem calls."""
    torch.manual_seed(1)
    model = MODELS.build(model_cfg)
    model.load_state_dict(state)
    model.train()
    inputs, samples = batch
    seen = dict(stem=0, targets=None)
    stem_fn, targets_fn = model.backbone.forward_stem, model.cpm.make_targets

    def count_stem(x):
        seen['stem'] += 1
        return stem_fn(x)

    def keep_targets(*args, **kwargs):
        seen['targets'] = targets_fn(*args, **kwargs)
        return seen['targets']

    model.backbone.forward_stem = count_stem
    model.cpm.make_targets = keep_targets
    MessageHub.get_current_instance().update_info('epoch', 0)
    torch.manual_seed(2)  # the training forward's dropout
    with torch.autocast('cpu', dtype=autocast_dtype, enabled=autocast_dtype is not None):
        losses = model(inputs, samples, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return losses, grads, seen


@pytest.fixture(scope='module')
def init_state(demo_caches):
    torch.manual_seed(0)
    model = MODELS.build(_model_cfg(demo_caches))
    model.init_weights()
    return model.state_dict()


def _assert_bit_identical(a, b):
    (loss_a, grad_a, seen_a), (loss_b, grad_b, seen_b) = a, b
    assert loss_a.keys() == loss_b.keys() and {'loss_cls', 'loss_ssc', 'loss_cpm'} <= loss_a.keys()
    for k in loss_a:
        assert torch.equal(loss_a[k], loss_b[k]), k
    assert grad_a.keys() == grad_b.keys() and len(grad_a) > 20
    for k in grad_a:
        assert torch.equal(grad_a[k], grad_b[k]), k
    assert torch.equal(seen_a['targets'], seen_b['targets'])


def test_training_step_is_bit_identical_with_the_shared_stem(demo_caches, init_state, batch):
    shared = _train_step(_model_cfg(demo_caches, share_stem=True), init_state, batch)
    separate = _train_step(_model_cfg(demo_caches, share_stem=False), init_state, batch)
    # 4 CAM scales + the training forward: one stem less when shared
    assert shared[2]['stem'] == 4 and separate[2]['stem'] == 5
    _assert_bit_identical(shared, separate)
    targets = shared[2]['targets']
    assert targets.shape == (4, 128, 128) and (targets < 4).any()  # CPM labelled something


def test_shared_stem_under_autocast_needs_cam_precision_amp(demo_caches, init_state, batch):
    """--amp: the stem runs in the training precision, so only CAMs in that precision share it
    (bit-identical); fp32 CAMs (the default) compute their scale-1 stem separately."""
    bf16 = torch.bfloat16
    shared = _train_step(_model_cfg(demo_caches, share_stem=True, cam_precision='amp'), init_state,
                         batch, bf16)
    separate = _train_step(_model_cfg(demo_caches, share_stem=False, cam_precision='amp'),
                           init_state, batch, bf16)
    assert shared[2]['stem'] == 4
    _assert_bit_identical(shared, separate)
    auto = _train_step(_model_cfg(demo_caches, cam_precision='fp32'), init_state, batch, bf16)
    assert auto[2]['stem'] == 5  # not shared: the CAMs run in fp32
    with pytest.raises(RuntimeError, match="cam_precision='fp32'.*bfloat16 autocast"):
        _train_step(_model_cfg(demo_caches, share_stem=True, cam_precision='fp32'), init_state,
                    batch, bf16)


def test_stem_sharing_is_refused_or_skipped_when_not_exact(demo_caches, init_state, batch):
    demo = copy.deepcopy(demo_caches.model.to_dict())  # the demo trains its BatchNorm
    with pytest.raises(ValueError, match='freeze_bn=False'):
        MODELS.build(dict(demo, cpm=dict(demo['cpm'], share_stem=True)))
    with pytest.raises(ValueError, match='share_stem'):
        MODELS.build(dict(demo, cpm=dict(demo['cpm'], share_stem='yes')))
    model = MODELS.build(demo)  # share_stem=None: skipped, with the reason
    model.train()
    assert 'backbone.conv1a' not in (model.stem_sharing_problem() or 'x')
    assert 'BatchNorm backbone.b2.bn_branch2a is in training mode' in \
        model.stem_sharing_problem()
    auto = _train_step(dict(demo, cpm=dict(demo['cpm'], start_epoch=0)),
                       MODELS.build(demo).state_dict(), batch)
    assert auto[2]['stem'] == 5
    # a BatchNorm switched to training mode by hand after the build: refused at the step
    model = MODELS.build(_model_cfg(demo_caches, share_stem=True))
    model.load_state_dict(init_state)
    model.train()
    model.backbone.b3.bn_branch2a.train()
    MessageHub.get_current_instance().update_info('epoch', 0)
    with pytest.raises(RuntimeError, match='b3.bn_branch2a'):
        model(*batch, mode='loss')


def test_stem_split_composes_to_the_forward():
    torch.manual_seed(0)
    net = ResNet38d(width=0.0625, out_stages=('b4', 'b6'), dropout=0.3)
    net.init_weights()
    net.eval()
    x = torch.randn(2, 3, 40, 56)
    whole = net(x)
    stem = net.forward_stem(x)
    assert stem.shortcut.shape == (2, 128, 5, 7) and stem.branch.shape == (2, 32, 5, 7)
    split = net.forward_from_stem(stem.detach())
    assert whole.keys() == split.keys() == {'b4', 'b6', 'out'}
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    net.train()  # frozen BN, the dropouts come after the cut
    assert net.stem_mode_problem() is None
    assert not any(isinstance(m, torch.nn.Dropout2d) for _, m in net.stem_modules())
