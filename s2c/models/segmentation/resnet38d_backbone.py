"""The wide ResNet-38d (:class:`s2c.models.backbones.ResNet38d`) as an mmseg backbone."""
from __future__ import annotations

import torch
from mmseg.registry import MODELS as SEG_MODELS

from s2c.models.backbones import ResNet38d


@SEG_MODELS.register_module(name='ResNet38d')
class SegResNet38d(ResNet38d):
    """ResNet-38d for mmseg segmentors: the same network, parameters and state-dict keys as
    the CAM classifier's backbone (so the converted ImageNet weights, or a trained
    classifier's ``backbone.*`` tensors, load strictly), returning a tuple as mmseg's decode
    heads expect.

    Registered in mmseg's registry as ``ResNet38d``; the arguments are those of
    :class:`~s2c.models.backbones.ResNet38d` (``width``, ``out_stages``, ``frozen_stages``,
    ``freeze_bn``, ``dropout``, ``pretrained``). The DeepLabV3 config freezes ``conv1a`` and
    every BatchNorm (ImageNet statistics), as the ResNet-38 segmentation recipe of the
    PSA/SEAM family does.

    Shapes:
        ``forward(x)``: ``x`` ``(B, 3, H, W)`` normalised image -> a tuple of the requested
        ``out_stages`` outputs (in the order given) followed by the final
        ``(B, round(4096 * width), ceil(H/8), ceil(W/8))`` feature (stride 8). Without
        ``out_stages`` the tuple holds the final feature only,
        so a decode head takes it with ``in_index=-1``.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        out = super().forward(x)
        if isinstance(out, torch.Tensor):
            return (out,)
        return tuple(out[name] for name in self.out_stages) + (out['out'],)
