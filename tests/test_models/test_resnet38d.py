"""ResNet-38d shapes, freezing and strict loading; the CAM classifier head."""
import pytest
import torch
from torch import nn

from s2c.models import CAMClassifier, ResNet38d
from s2c.models.backbones.resnet38d import FROZEN_STAGES

# PSA/S2C key names of a few parameters (networks/resnet38d.py).
PSA_KEYS = ['conv1a.weight', 'b2.conv_branch1.weight', 'b2_1.bn_branch2a.running_var',
            'b4_5.conv_branch2b1.weight', 'b5.conv_branch1.weight',
            'b6.bn_branch2b2.weight', 'b7.conv_branch2b2.weight', 'bn7.running_mean']


def test_full_width_parameter_names_and_count():
    net = ResNet38d(width=1.0)
    keys = set(net.state_dict())
    assert set(PSA_KEYS) <= keys
    assert 'b2_1.conv_branch1.weight' not in keys  # same-shape blocks have no projection
    assert net.b7.conv_branch2b2.weight.shape == (4096, 2048, 1, 1)
    assert net.b5.conv_branch2b1.dilation == (2, 2) and net.b6.conv_branch2b1.dilation == (4, 4)
    n_params = sum(p.numel() for p in net.parameters())
    assert 104e6 < n_params < 106e6  # wide ResNet-38: ~104.9 M parameters


def test_output_stride_8_and_stages():
    net = ResNet38d(width=0.125, out_stages=('b3', 'b5')).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 80))
    assert out['out'].shape == (2, 512, 8, 10)
    assert out['b3'].shape == (2, 32, 16, 20) and out['b5'].shape == (2, 128, 8, 10)
    with torch.no_grad():
        assert net.eval().__class__(width=0.125)(torch.randn(1, 3, 65, 65)).shape[-1] == 9


def test_freezing_as_in_s2c():
    net = ResNet38d(width=0.125)
    for name in FROZEN_STAGES:
        assert all(not p.requires_grad for p in getattr(net, name).parameters())
    assert net.b3.conv_branch2a.weight.requires_grad
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    net.train()
    assert all(not m.training for m in bns)
    assert net.b6.dropout_2b1.training  # dropout still follows train()
    # running statistics do not move in training mode
    before = net.b3.bn_branch2a.running_mean.clone()
    net(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert torch.equal(before, net.b3.bn_branch2a.running_mean)


def test_bn_stays_frozen_after_syncbn_conversion():
    """Multi-GPU runs may convert BN to SyncBatchNorm (not a BatchNorm2d subclass)."""
    net = nn.SyncBatchNorm.convert_sync_batchnorm(ResNet38d(width=0.125))
    net.train()
    sync = [m for m in net.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(sync) > 0 and all(not m.training for m in sync)
    assert net.b6.dropout_2b1.training


def test_unfrozen_bn_for_demo():
    net = ResNet38d(width=0.125, freeze_bn=False, frozen_stages=()).train()
    assert net.conv1a.weight.requires_grad and net.bn7.training


def test_strict_loading_names_keys(tmp_path):
    src = ResNet38d(width=0.125)
    state = {k: v for k, v in src.state_dict().items() if not k.endswith('num_batches_tracked')}
    path = tmp_path / 'ok.pth'
    torch.save(state, path)
    dst = ResNet38d(width=0.125, pretrained=str(path))
    dst.init_weights()
    assert torch.equal(dst.b4_3.conv_branch2a.weight, src.b4_3.conv_branch2a.weight)

    bad = dict(state)
    del bad['b4_3.conv_branch2a.weight']
    bad['fc_extra.weight'] = torch.zeros(1)
    torch.save(bad, tmp_path / 'bad.pth')
    with pytest.raises(KeyError, match=r'missing keys 1: \[b4_3.conv_branch2a.weight\]') as e:
        ResNet38d(width=0.125, pretrained=str(tmp_path / 'bad.pth')).init_weights()
    assert 'fc_extra.weight' in str(e.value) and 'bad.pth' in str(e.value)

    with pytest.raises(ValueError, match='wrong shape'):
        ResNet38d(width=0.25, pretrained=str(path)).init_weights()

    (tmp_path / 'trunc.pth').write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match='trunc.pth'):
        ResNet38d(width=0.125, pretrained=str(tmp_path / 'trunc.pth')).init_weights()


def test_classifier_head_and_official_checkpoint(tmp_path):
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.125), num_classes=20,
                          feat_dim=16)
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 48, 40)
    out = model(x, mode='tensor')
    assert out['feat'].shape == (2, 16, 6, 5) and out['cam'].shape == (2, 20, 6, 5)
    assert (out['feat'] >= 0).all()
    torch.testing.assert_close(out['logits'], out['cam'].mean(dim=(2, 3)))
    assert model.fc8.bias is None and model.fc9.bias is None
    # official S2C checkpoint layout: PSA names at top level + fc8/bn8/fc9, DataParallel prefix
    official = {'module.' + k: v for k, v in model.backbone.state_dict().items()}
    official.update({'module.fc8.weight': model.fc8.weight.detach() * 2,
                     'module.fc9.weight': model.fc9.weight.detach(),
                     'module.bn8.weight': torch.ones(16), 'module.bn8.bias': torch.zeros(16)})
    torch.save(official, tmp_path / '039net_main.pth')
    other = CAMClassifier(backbone=dict(type='ResNet38d', width=0.125), num_classes=20,
                          feat_dim=16)
    other.load_official_checkpoint(str(tmp_path / '039net_main.pth'))
    torch.testing.assert_close(other.fc8.weight, model.fc8.weight * 2)


def test_loss_and_predict_modes():
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.125), num_classes=3,
                          feat_dim=8)
    model.init_weights()
    labels = torch.tensor([[1., 0., 1.], [0., 1., 0.]])
    samples = [dict(name=f'i{i}', gt_label=labels[i]) for i in range(2)]
    losses = model(torch.randn(2, 3, 32, 32), samples, mode='loss')
    assert set(losses) == {'loss_cls'} and losses['loss_cls'].ndim == 0
    logits = model(torch.randn(2, 3, 32, 32), mode='tensor')['logits']
    assert logits.shape == (2, 3)
    model.eval()
    preds = model(torch.randn(2, 3, 32, 24), samples, mode='predict')
    assert preds[0]['keys'].tolist() == [0, 2] and preds[0]['cams'].shape == (2, 32, 24)
    assert preds[1]['cams'].shape == (1, 32, 24)
    assert float(preds[0]['cams'].max()) <= 1.0 and float(preds[0]['cams'].min()) >= 0.0
