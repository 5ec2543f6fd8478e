"""Wide ResNet-38 ("resnet38d") with output stride 8, as used by PSA and S2C.

Architecture and parameter names follow PSA's ``network/resnet38d.py`` (also
``networks/resnet38d.py`` of the official S2C code), so converted ImageNet
weights (``tools/model_converters/resnet38d_mxnet2torch.py``) and PSA/S2C
state dicts load strictly. The network is Wu et al., "Wider or Deeper:
Revisiting the ResNet Model for Visual Recognition" (pre-activation blocks):

=========  =======================  ======  ========  =================
stage      blocks                   stride  dilation  channels (w=1)
=========  =======================  ======  ========  =================
conv1a     3x3 conv                 1       1         64
b2         b2, b2_1, b2_2           2       1         128
b3         b3, b3_1, b3_2           2       1         256
b4         b4, b4_1 ... b4_5        2       1         512
b5         b5, b5_1, b5_2           1       2         1024
b6         bottleneck               1       4         2048
b7         bottleneck               1       4         4096
bn7        BN + ReLU                                  4096
=========  =======================  ======  ========  =================

Output stride 8: a ``(B, 3, H, W)`` input gives ``(B, 4096, ceil(H/8), ceil(W/8))``.

The forward is cut in two at the first stochastic layer (b6's first channel
dropout): :meth:`ResNet38d.forward_stem` (conv1a ... b5 and b6 up to its
dropout) and :meth:`ResNet38d.forward_from_stem`; ``forward`` is their
composition. With frozen BatchNorm the stem computes the same tensors in train
and eval mode, so S2C's training forward and CPM's scale-1 CAM share it
(:class:`~s2c.models.CAMClassifier`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from s2c.registry import MODELS
from s2c.utils.checkpoint import load_state_dict_strict, read_state_dict

#: Stages whose parameters S2C never trains (``Net_CAM.not_training``).
FROZEN_STAGES = ('conv1a', 'b2', 'b2_1', 'b2_2')
#: Names of the stages that :meth:`ResNet38d.forward` can return.
STAGE_NAMES = ('conv1a', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7')


class ResBlock(nn.Module):
    """Pre-activation basic block (BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut).

    The 1x1 projection ``conv_branch1`` exists only when the shape changes and
    is applied to the pre-activated input (as in PSA).

    Args:
        in_channels: Input channels.
        mid_channels: Channels after the first 3x3 conv.
        out_channels: Output channels.
        stride: Stride of the first conv and of the projection.
        first_dilation: Dilation of the first conv (default: ``dilation``).
        dilation: Dilation of the second conv.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1,
                 first_dilation: int | None = None, dilation: int = 1) -> None:
        super().__init__()
        self.same_shape = in_channels == out_channels and stride == 1
        first_dilation = dilation if first_dilation is None else first_dilation
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, mid_channels, 3, stride,
                                       padding=first_dilation, dilation=first_dilation,
                                       bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation,
                                        dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, H, W)`` -> ``(B, out, H/stride, W/stride)``."""
        pre = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(pre)
        out = self.conv_branch2a(pre)
        out = self.conv_branch2b1(F.relu(self.bn_branch2b1(out)))
        return shortcut + out


class ResBlockBottleneck(nn.Module):
    """Pre-activation bottleneck block (1x1 -> 3x3 dilated -> 1x1), always projected.

    Channels go ``in -> out/4 -> out/2 -> out`` (PSA's ``ResBlock_bot``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first 1x1 conv and of the projection.
        dilation: Dilation of the 3x3 conv.
        dropout: Channel dropout before the 3x3 and the last 1x1 conv (0.2 in PSA/S2C).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(out_channels // 4, out_channels // 2, 3,
                                        padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, H, W)`` -> ``(B, out, H/stride, W/stride)``."""
        return self.forward_tail(*self.forward_head(x))

    #: Submodules that :meth:`forward_head` runs (everything before the first dropout).
    HEAD_MODULES = ('bn_branch2a', 'conv_branch1', 'conv_branch2a', 'bn_branch2b1')

    def forward_head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block up to its first dropout.

        Returns:
            tuple: ``shortcut`` ``(B, out, H', W')`` (projection of the
            pre-activated input) and ``branch`` ``(B, out/4, H', W')`` (ReLU after
            ``bn_branch2b1``, the input of ``dropout_2b1``).
        """
        pre = F.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(pre)
        branch = F.relu(self.bn_branch2b1(self.conv_branch2a(pre)))
        return shortcut, branch

    def forward_tail(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """The rest of the block from :meth:`forward_head`'s outputs (both dropouts)."""
        out = self.conv_branch2b1(self.dropout_2b1(branch))
        out = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(out))))
        return shortcut + out


@dataclass
class StemFeatures:
    """Output of :meth:`ResNet38d.forward_stem`: the network up to its first dropout.

    Attributes:
        shortcut: ``(B, C6, h, w)`` b6's projection shortcut (``C6 = round(2048 w)``,
            ``h = ceil(H / 8)``).
        branch: ``(B, C6 / 4, h, w)`` b6's branch before ``dropout_2b1``.
        outs: Requested ``out_stages`` outputs of the stem's stages (conv1a ... b5).
    """

    shortcut: torch.Tensor
    branch: torch.Tensor
    outs: dict[str, torch.Tensor] = field(default_factory=dict)

    def detach(self) -> StemFeatures:
        """The same tensors cut from the autograd graph (no copy)."""
        return StemFeatures(self.shortcut.detach(), self.branch.detach(),
                            {k: v.detach() for k, v in self.outs.items()})


def is_bn_counter(key: str) -> bool:
    """BatchNorm ``num_batches_tracked`` buffers: absent from MXNet conversions, unused by
    frozen BN, so their absence is tolerated when loading."""
    return key.endswith('num_batches_tracked')


@MODELS.register_module()
class ResNet38d(BaseModule):
    """PSA's wide ResNet-38 backbone, output stride 8 (b5 dilation 2, b6/b7 dilation 4).

    Args:
        width: Channel multiplier (1.0 = the real network, 4096-channel output).
            Smaller widths build the same graph for tests and the CPU demo.
        out_stages: Stage names (see :data:`STAGE_NAMES`) to return; ``None`` =
            only the final ``bn7``-ReLU feature.
        frozen_stages: Stages whose parameters get ``requires_grad=False``
            (S2C: conv1a, b2, b2_1, b2_2).
        freeze_bn: Keep every BatchNorm in eval mode with frozen affine
            parameters, as S2C does (its ImageNet statistics are kept). Only the
            demo (random init, no ImageNet weights) turns this off.
        dropout: Channel dropout inside b6/b7 (0.2 in PSA/S2C).
        pretrained: Optional path of a PSA-style torch state dict (e.g. the
            converted ImageNet weights), loaded strictly.
        init_cfg: MMEngine init config.

    Shapes:
        ``forward(x)``: ``x`` ``(B, 3, H, W)`` normalised image -> ``(B, C_out, ceil(H/8),
        ceil(W/8))`` with ``C_out = round(4096 * width)``; with ``out_stages`` a
        dict of stage outputs plus ``'out'``.
    """

    def __init__(self, width: float = 1.0, out_stages: Sequence[str] | None = None,
                 frozen_stages: Sequence[str] = FROZEN_STAGES, freeze_bn: bool = True,
                 dropout: float = 0.2, pretrained: str | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)

        def c(n: int) -> int:
            return max(4, int(round(n * width)))

        self.width = width
        self.out_channels = c(4096)
        self.out_stages = tuple(out_stages or ())
        unknown = set(self.out_stages) - set(STAGE_NAMES)
        if unknown:
            raise ValueError(f'unknown out_stages {sorted(unknown)}; choose from {STAGE_NAMES}')
        self.frozen_stages = tuple(frozen_stages)
        self.freeze_bn = freeze_bn
        self.pretrained = pretrained

        self.conv1a = nn.Conv2d(3, c(64), 3, padding=1, bias=False)
        self.b2 = ResBlock(c(64), c(128), c(128), stride=2)
        self.b2_1 = ResBlock(c(128), c(128), c(128))
        self.b2_2 = ResBlock(c(128), c(128), c(128))
        self.b3 = ResBlock(c(128), c(256), c(256), stride=2)
        self.b3_1 = ResBlock(c(256), c(256), c(256))
        self.b3_2 = ResBlock(c(256), c(256), c(256))
        self.b4 = ResBlock(c(256), c(512), c(512), stride=2)
        for i in range(1, 6):
            setattr(self, f'b4_{i}', ResBlock(c(512), c(512), c(512)))
        self.b5 = ResBlock(c(512), c(512), c(1024), first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(c(1024), c(512), c(1024), dilation=2)
        self.b5_2 = ResBlock(c(1024), c(512), c(1024), dilation=2)
        self.b6 = ResBlockBottleneck(c(1024), c(2048), dilation=4, dropout=dropout)
        self.b7 = ResBlockBottleneck(c(2048), c(4096), dilation=4, dropout=dropout)
        self.bn7 = nn.BatchNorm2d(c(4096))

        self._stages = {
            'conv1a': ['conv1a'], 'b2': ['b2', 'b2_1', 'b2_2'], 'b3': ['b3', 'b3_1', 'b3_2'],
            'b4': ['b4'] + [f'b4_{i}' for i in range(1, 6)], 'b5': ['b5', 'b5_1', 'b5_2'],
            'b6': ['b6'], 'b7': ['b7'],
        }
        for name in self.frozen_stages:
            if not hasattr(self, name):
                raise ValueError(f'unknown frozen stage {name!r}')
        self._apply_freezing()

    def init_weights(self) -> None:
        """Kaiming-normal conv init, then the strict ``pretrained`` load when given."""
        if self.pretrained is not None:
            try:
                state = read_state_dict(self.pretrained, 'ResNet-38d weights')
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f'{e}. Convert the ImageNet weights of PSA/S2C with python '
                    'tools/model_converters/resnet38d_mxnet2torch.py '
                    'ilsvrc-cls_rna-a1_cls1000_ep-0001.params ' + self.pretrained
                    + ' (or set model.backbone.pretrained=None for random init)') from None
            load_state_dict_strict(self, state, self.pretrained, optional=is_bn_counter,
                                   hint='Wrong width or wrong file?')
            self._is_init = True
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        # Without trained BN statistics the pre-activation residual sums grow
        # with depth; damp the last conv of every residual branch.
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.conv_branch2b1.weight.data.mul_(1.0 / math.sqrt(2.0))
            elif isinstance(m, ResBlockBottleneck):
                m.conv_branch2b2.weight.data.mul_(1.0 / math.sqrt(2.0))
        super().init_weights()

    def _apply_freezing(self) -> None:
        for name in self.frozen_stages:
            for p in getattr(self, name).parameters():
                p.requires_grad = False
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, _BatchNorm):  # also SyncBatchNorm
                    for p in m.parameters():
                        p.requires_grad = False

    def train(self, mode: bool = True) -> ResNet38d:
        """Set train/eval mode; with ``freeze_bn`` every BatchNorm stays in eval mode."""
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, _BatchNorm):  # also SyncBatchNorm
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Run the network (:meth:`forward_stem`, then :meth:`forward_from_stem`).

        Args:
            x: ``(B, 3, H, W)`` image normalised with ImageNet mean/std.

        Returns:
            ``(B, C_out, ceil(H/8), ceil(W/8))`` feature after bn7 + ReLU, or a
            dict of the requested stage outputs plus ``'out'``.
        """
        return self.forward_from_stem(self.forward_stem(x))

    #: Stages that :meth:`forward_stem` runs whole; b6 is cut before its first dropout.
    STEM_STAGES = ('conv1a', 'b2', 'b3', 'b4', 'b5')

    def forward_stem(self, x: torch.Tensor) -> StemFeatures:
        """The network up to its first stochastic layer (b6's ``dropout_2b1``).

        Args:
            x: ``(B, 3, H, W)`` normalised image.

        Returns:
            StemFeatures: b6's shortcut and pre-dropout branch at ``(ceil(H/8),
            ceil(W/8))``, plus the requested stem stage outputs.
        """
        outs = {}
        for stage in self.STEM_STAGES:
            for name in self._stages[stage]:
                x = getattr(self, name)(x)
            if stage in self.out_stages:
                outs[stage] = x
        return StemFeatures(*self.b6.forward_head(x), outs=outs)

    def forward_from_stem(self, stem: StemFeatures) -> torch.Tensor | dict[str, torch.Tensor]:
        """The rest of :meth:`forward` from :meth:`forward_stem`'s output (same return)."""
        outs = dict(stem.outs)
        x = self.b6.forward_tail(stem.shortcut, stem.branch)
        if 'b6' in self.out_stages:
            outs['b6'] = x
        x = self.b7(x)
        if 'b7' in self.out_stages:
            outs['b7'] = x
        x = F.relu(self.bn7(x))
        if not self.out_stages:
            return x
        outs['out'] = x
        return outs

    def stem_modules(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of every module :meth:`forward_stem` runs."""
        mods = [(f'{blk}.{n}' if n else blk, m) for stage in self.STEM_STAGES
                for blk in self._stages[stage] for n, m in getattr(self, blk).named_modules()]
        return mods + [(f'b6.{n}', getattr(self.b6, n)) for n in self.b6.HEAD_MODULES]

    def stem_mode_problem(self) -> str | None:
        """Why the stem would differ between the current mode and eval mode, or ``None``.

        The stem's output is mode-independent when no BatchNorm in it uses batch
        statistics (``freeze_bn`` keeps them in eval mode) and no dropout in it is
        active. Check it in training mode, before sharing the stem with an eval forward.
        """
        for name, m in self.stem_modules():
            if isinstance(m, _BatchNorm) and m.training:
                return (f'BatchNorm backbone.{name} is in training mode (freeze_bn='
                        f'{self.freeze_bn}): it normalises with batch statistics in the training '
                        'forward and with running statistics in eval mode')
            if isinstance(m, _DropoutNd) and m.training and m.p > 0:
                return f'dropout backbone.{name} (p={m.p}) is active in the stem'
        return None
