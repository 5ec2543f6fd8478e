"""Precision of CPM's multi-scale CAM forwards (``batch_multiscale_cams(precision=...)``): fp32
inside an autocast region is exactly fp32, 'amp' follows autocast, a non-finite
reduced-precision CAM falls back to fp32; channels_last leaves CPU results unchanged."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from s2c.cam.inference import (
    CAM_PRECISIONS,
    DEFAULT_CAM_PRECISION,
    SAFE_CAM_AUTOCAST_DTYPES,
    batch_multiscale_cams,
    cam_autocast_state,
)
from s2c.models import CAMClassifier


def _model(**kw) -> CAMClassifier:
    torch.manual_seed(0)
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.0625), num_classes=4,
                          feat_dim=8, **kw)
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module')
def case():
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, 48, 64, generator=g)
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    return _model(), inputs, labels


def test_fp32_under_autocast_is_exactly_fp32(case):
    model, inputs, labels = case
    reference = batch_multiscale_cams(model, inputs, labels, precision='fp32')
    assert DEFAULT_CAM_PRECISION in CAM_PRECISIONS
    assert torch.equal(batch_multiscale_cams(model, inputs, labels), reference)  # default
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under_amp = batch_multiscale_cams(model, inputs, labels, precision='fp32')
        following = batch_multiscale_cams(model, inputs, labels, precision='amp')
        auto = batch_multiscale_cams(model, inputs, labels, precision='auto')
        assert cam_autocast_state('amp', 'cpu') == (True, torch.bfloat16)
        assert cam_autocast_state('fp32', 'cpu') == (False, torch.float32)
        assert cam_autocast_state('auto', 'cpu') == (  # bf16 did not pass the study
            (True, torch.bfloat16) if torch.bfloat16 in SAFE_CAM_AUTOCAST_DTYPES
            else (False, torch.float32))
        assert torch.is_autocast_enabled('cpu')  # restored after the CAM forwards
    with torch.autocast('cpu', dtype=torch.float16):
        assert cam_autocast_state('auto', 'cpu') == (
            (True, torch.float16) if torch.float16 in SAFE_CAM_AUTOCAST_DTYPES
            else (False, torch.float32))
    assert cam_autocast_state('auto', 'cpu') == (False, torch.float32)
    assert torch.equal(under_amp, reference) and under_amp.dtype == torch.float32
    if torch.bfloat16 not in SAFE_CAM_AUTOCAST_DTYPES:
        assert torch.equal(auto, reference)
    bf16 = batch_multiscale_cams(model, inputs, labels, precision='bf16')
    assert torch.equal(following, bf16) and following.dtype == torch.float32
    assert not torch.equal(bf16, reference) and (bf16 - reference).abs().max() < 0.1
    assert torch.equal(batch_multiscale_cams(model, inputs, labels, precision='amp'), reference)
    with pytest.raises(ValueError, match='precision'):
        batch_multiscale_cams(model, inputs, labels, precision='tf32')


class _Overflowing(nn.Module):
    """A 'classifier' whose raw CAM exceeds the fp16 range (65504) but not fp32's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        nn.init.constant_(self.conv.weight, 3e4)

    def forward(self, x: torch.Tensor, mode: str = 'tensor') -> dict[str, torch.Tensor]:
        return dict(cam=self.conv(x.abs() + 1.0))


def test_non_finite_reduced_precision_cams_fall_back_to_fp32():
    model, inputs = _Overflowing(), torch.rand(1, 3, 16, 16)
    labels = torch.ones(1, 4)
    reference = batch_multiscale_cams(model, inputs, labels, precision='fp32')
    assert torch.isfinite(reference).all() and reference.max() > 0.9
    with pytest.warns(RuntimeWarning, match="non-finite CAMs in CPM's 'fp16'"):
        got = batch_multiscale_cams(model, inputs, labels, precision='fp16')
    assert torch.equal(got, reference)
    with torch.autocast('cpu', dtype=torch.float16):
        with pytest.warns(RuntimeWarning, match="'amp'"):
            got = batch_multiscale_cams(model, inputs, labels, precision='amp',
                                        scale_one_cam=lambda: torch.full((1, 4, 2, 2), 1e9))
    assert torch.equal(got, reference)  # the fallback recomputes scale 1 as well


def test_channels_last_changes_nothing_on_cpu(case):
    _, inputs, labels = case
    on, off = _model(), _model(channels_last=False)
    on.to('cpu')
    assert all(p.is_contiguous() for p in on.parameters())
    assert torch.equal(on(inputs, mode='tensor')['cam'], off(inputs, mode='tensor')['cam'])
    # parameters that come back from a device in channels_last get the default format again
    on.fc8.weight.data = on.fc8.weight.data.contiguous(memory_format=torch.channels_last)
    conv = on.backbone.b2.conv_branch2a.weight
    conv.data = conv.data.contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    on.cpu()
    assert conv.is_contiguous() and torch.equal(conv, off.backbone.b2.conv_branch2a.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_channels_last_on_cuda(case):
    _, inputs, labels = case
    model = _model().cuda()
    conv = model.backbone.b3.conv_branch2a.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    ref = _model(channels_last=False).cuda()
    torch.testing.assert_close(model(inputs.cuda(), mode='tensor')['cam'],
                               ref(inputs.cuda(), mode='tensor')['cam'], atol=1e-3, rtol=1e-3)
    model.cpu()
    assert conv.is_contiguous()
