"""The parts registered into mmseg: DLV2Head, ResNet38d backbone, class-balanced CE,
the caffe ResNet-101 key converter and the TTA/CRF model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.backbones import ResNet
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample
from PIL import Image
from scipy import ndimage as ndi

from s2c.models.segmentation import (
    DEEPLAB_CRF,
    ClassBalancedCELoss,
    DenseCRFSegTTAModel,
    DLV2Head,
    SegResNet38d,
    caffe_to_mmseg,
    convert_caffe_resnet101,
    mmseg_to_caffe,
)
from s2c.models.segmentation.tta_crf import crf_params
from s2c.registry import MODELS as S2C_MODELS
from s2c.utils.checkpoint import load_state_dict_strict


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build in mmseg's scope (as its Runner does), whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


# ----------------------------------------------------------------------------- DLV2Head
def test_dlv2_head_is_the_sum_of_its_four_dilated_branches():
    head = DLV2Head(in_channels=8, num_classes=3, in_index=-1)
    head.init_weights()
    assert [b.dilation for b in head.aspp] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert not hasattr(head, 'conv_seg') and head.dropout is None
    for b in head.aspp:  # N(0, 0.01) weights, zero biases
        assert b.bias.abs().max() == 0 and 0.005 < b.weight.std() < 0.02
        torch.nn.init.normal_(b.bias)  # non-zero biases make the sum check stronger
    x = torch.randn(2, 8, 30, 31)
    out = head((torch.zeros(1), x))  # in_index=-1 takes the last feature
    ref = sum(F.conv2d(x, b.weight, b.bias, padding=d, dilation=d)
              for b, d in zip(head.aspp, (6, 12, 18, 24)))
    assert out.shape == (2, 3, 30, 31)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match='channels'):
        DLV2Head(in_channels=8, num_classes=3, channels=4)


# ----------------------------------------------------------------------------- loss
def test_class_balanced_ce_by_hand():
    loss = ClassBalancedCELoss()
    assert loss.loss_name == 'loss_ce_balanced'
    # 4 pixels: three of class 0, one of class 1, one ignored.
    logits = torch.zeros(1, 2, 1, 5)
    logits[0, 0, 0, 0] = math.log(3.0)  # p(class 0) = 3/4 at pixel 0
    label = torch.tensor([[[0, 0, 0, 1, 255]]])
    ce0 = [-math.log(0.75), math.log(2.0), math.log(2.0)]
    expected = (sum(ce0) / 3 + math.log(2.0)) / 2  # mean over classes of per-class means
    assert loss(logits, label).item() == pytest.approx(expected, rel=1e-6)
    plain = F.cross_entropy(logits, label, ignore_index=255).item()
    assert plain == pytest.approx((sum(ce0) + math.log(2.0)) / 4, rel=1e-6)
    # One class present: plain cross-entropy.
    one = torch.tensor([[[1, 1, 1, 1, 255]]])
    assert loss(logits, one).item() == pytest.approx(
        F.cross_entropy(logits, one, ignore_index=255).item(), rel=1e-6)
    # Only ignored pixels: 0 with a graph.
    logits.requires_grad_(True)
    zero = loss(logits, torch.full((1, 1, 5), 255))
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match='loss_'):
        ClassBalancedCELoss(loss_name='ce')


# ----------------------------------------------------------------------------- ResNet38d
def test_resnet38d_in_mmseg_loads_the_classifiers_state_dict():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('s2c'):
        classifier = S2C_MODELS.build(dict(type='CAMClassifier', backbone=dict(
            type='ResNet38d', width=0.0625), num_classes=20, feat_dim=16))
    classifier.init_weights()
    state = {k[len('backbone.'):]: v for k, v in classifier.state_dict().items()
             if k.startswith('backbone.')}
    backbone = SEG_MODELS.build(dict(type='ResNet38d', width=0.0625))
    assert isinstance(backbone, SegResNet38d)
    load_state_dict_strict(backbone, state, 'classifier')  # raises on any key difference
    classifier.eval()
    backbone.eval()
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        out = backbone(x)
        ref = classifier.backbone(x)
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == (1, 256, 5, 6)
    torch.testing.assert_close(out[0], ref)
    staged = SEG_MODELS.build(dict(type='ResNet38d', width=0.0625, out_stages=('b4', 'b3')))
    shapes = [tuple(t.shape) for t in staged(x)]
    assert shapes == [(1, 32, 5, 6), (1, 16, 10, 12), (1, 256, 5, 6)]


# ----------------------------------------------------------------------------- caffe converter
def deeplab_pytorch_resnet101_state(num_classes: int = 91) -> dict[str, torch.Tensor]:
    """A random state dict laid out as deeplab-pytorch's ResNet-101 init file (its key
    names, block counts and channel widths; BN statistics float64, as its convert.py)."""
    g = torch.Generator().manual_seed(0)
    state = {}

    def conv_bn(prefix, cout, cin, k):
        state[prefix + '.conv.weight'] = torch.randn(cout, cin, k, k, generator=g)
        state[prefix + '.bn.weight'] = torch.rand(cout, generator=g)
        state[prefix + '.bn.bias'] = torch.randn(cout, generator=g)
        state[prefix + '.bn.running_mean'] = torch.randn(cout, generator=g).double()
        state[prefix + '.bn.running_var'] = torch.rand(cout, generator=g).double() + 0.5
        state[prefix + '.bn.num_batches_tracked'] = torch.tensor(0)

    conv_bn('layer1.conv1', 64, 3, 7)
    cin = 64
    for layer, blocks in zip((2, 3, 4, 5), (3, 4, 23, 3)):
        mid = 64 * 2 ** (layer - 2)
        out = 4 * mid
        for b in range(1, blocks + 1):
            p = f'layer{layer}.block{b}'
            conv_bn(p + '.reduce', mid, cin if b == 1 else out, 1)
            conv_bn(p + '.conv3x3', mid, mid, 3)
            conv_bn(p + '.increase', out, mid, 1)
            if b == 1:
                conv_bn(p + '.shortcut', out, cin, 1)
        cin = out
    state['fc.weight'] = torch.randn(num_classes, 2048, 1, 1, generator=g)
    state['fc.bias'] = torch.randn(num_classes, generator=g)
    return state


def test_caffe_converter_round_trip(tmp_path):
    src = deeplab_pytorch_resnet101_state()
    torch.save(src, tmp_path / 'init.pth')
    count, dropped = convert_caffe_resnet101(str(tmp_path / 'init.pth'), str(tmp_path / 'out.pth'))
    assert sorted(dropped) == ['fc.bias', 'fc.weight'] and count == len(src) - 2
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert all(v.dtype != torch.float64 for v in converted.values())
    # Loads strictly into mmseg's caffe-style ResNet-101, tensors where they belong.
    model = ResNet(depth=101, style='caffe')
    model.load_state_dict(converted, strict=True)
    torch.testing.assert_close(model.conv1.weight, src['layer1.conv1.conv.weight'])
    torch.testing.assert_close(model.layer1[0].conv1.weight,
                               src['layer2.block1.reduce.conv.weight'])
    torch.testing.assert_close(model.layer3[22].bn2.running_var,
                               src['layer4.block23.conv3x3.bn.running_var'].float())
    torch.testing.assert_close(model.layer4[0].downsample[1].bias,
                               src['layer5.block1.shortcut.bn.bias'])
    assert model.layer2[0].conv1.stride == (2, 2)  # caffe style: stride on the 1x1 reduce
    # And back to the original names and values.
    back = mmseg_to_caffe(converted)
    assert set(back) == set(src) - {'fc.weight', 'fc.bias'}
    for k, v in back.items():
        torch.testing.assert_close(v, src[k].float() if src[k].is_floating_point() else src[k])
    # Prefixed whole-model files convert too; foreign keys are refused, listed.
    prefixed, _ = caffe_to_mmseg({'module.base.' + k: v for k, v in src.items()})
    assert set(prefixed) == set(converted)
    with pytest.raises(KeyError, match='layer6.block1'):
        caffe_to_mmseg({'layer6.block1.reduce.conv.weight': torch.zeros(1)})


def test_caffe_converter_refuses_a_truncated_file(tmp_path):
    src = deeplab_pytorch_resnet101_state()
    del src['layer4.block23.increase.conv.weight']
    torch.save(src, tmp_path / 'init.pth')
    with pytest.raises(KeyError, match='layer3.22.conv3.weight'):
        convert_caffe_resnet101(str(tmp_path / 'init.pth'), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


# ----------------------------------------------------------------------------- TTA + CRF
class _StubSegmentor(torch.nn.Module):
    """merge_preds needs no network; BaseTTAModel only asks for a test_step."""

    def test_step(self, data):
        raise AssertionError('not called by merge_preds')


def _view(logits: torch.Tensor, img_path: str = '', gt: torch.Tensor | None = None):
    s = SegDataSample(metainfo=dict(img_path=img_path, ori_shape=tuple(logits.shape[1:])))
    s.seg_logits = PixelData(data=logits)
    if gt is not None:
        s.gt_sem_seg = PixelData(data=gt[None])
    return s


def test_tta_merge_is_the_mean_of_the_softmax():
    model = DenseCRFSegTTAModel(module=_StubSegmentor())
    a = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])    # (C=2, 1, 2)
    b = torch.tensor([[[-3.0, 0.0]], [[0.0, 1.0]]])
    gt = torch.tensor([[1, 1]])
    (merged,) = model.merge_preds([[_view(a, 'x.jpg', gt), _view(b, 'x.jpg', gt)]])
    probs = (a.softmax(0) + b.softmax(0)) / 2
    torch.testing.assert_close(merged.seg_logits.data.exp(), probs)
    assert merged.pred_sem_seg.data.tolist() == [[[1, 1]]]  # (0.94+0.047)/2 < 0.5 at pixel 0
    assert merged.gt_sem_seg.data.tolist() == [[[1, 1]]] and merged.img_path == 'x.jpg'


def test_crf_sharpens_a_blurred_prediction(tmp_path):
    """A disc on a textured background; the prediction is the true mask blurred and shifted:
    the DeepLab CRF recovers the edge (IoU up), as the post-processing is meant to."""
    rng = np.random.default_rng(0)
    h, w = 120, 160
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - 60) ** 2 + (xx - 85) ** 2 < 35 ** 2
    img = np.where(mask[..., None], [200, 40, 40], [40, 120, 60]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / 'img.png')
    fg = ndi.gaussian_filter(np.roll(mask, 6, axis=1).astype(np.float64), 8)
    fg = np.clip(fg * 0.9 + 0.05, 0.0, 1.0)
    logits = torch.from_numpy(np.log(np.stack([1 - fg, fg]))).float()
    gt = torch.from_numpy(mask.astype(np.int64))

    def iou(sample):
        pred = sample.pred_sem_seg.data[0].numpy().astype(bool)
        return (pred & mask).sum() / (pred | mask).sum()

    plain = DenseCRFSegTTAModel(module=_StubSegmentor())
    crf = DenseCRFSegTTAModel(module=_StubSegmentor(), crf=True)
    assert crf.crf == DEEPLAB_CRF
    (before,) = plain.merge_preds([[_view(logits, str(tmp_path / 'img.png'), gt)]])
    (after,) = crf.merge_preds([[_view(logits, str(tmp_path / 'img.png'), gt)]])
    assert iou(before) < 0.85 and iou(after) > 0.95  # measured: 0.80 -> 0.99
    assert torch.allclose(after.seg_logits.data.exp().sum(0), torch.ones(h, w), atol=1e-4)


def test_crf_params_options():
    assert crf_params(None) is None and crf_params(False) is None
    assert crf_params(True) == DEEPLAB_CRF
    assert crf_params(dict(iterations=3)).iterations == 3
    assert crf_params(dict(iterations=3)).bilateral_sxy == 67.0
    with pytest.raises(TypeError, match='unknown CRF parameters'):
        crf_params(dict(iters=3))
