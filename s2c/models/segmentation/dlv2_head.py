"""DeepLabV2's ASPP classifier as an mmseg decode head (mmseg 1.x has none)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn


@SEG_MODELS.register_module()
class DLV2Head(BaseDecodeHead):
    """DeepLabV2 head: the sum of parallel 3x3 dilated convolutions straight to class logits.

    Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous
    Convolution, and Fully Connected CRFs" (TPAMI 2018), Sec. 3.1 / Fig. 4 (ASPP-L): four
    branches with dilations 6/12/18/24, each a ``3x3`` conv (with bias) from the backbone
    feature to ``num_classes`` logits, summed; no normalisation, no ReLU, no dropout.
    Weights are initialised N(0, 0.01), biases 0 (the DeepLabV2 recipe).

    Args:
        in_channels: Channels of the backbone feature (2048 for ResNet-101).
        dilations: Dilation (= padding) of each branch.
        **kwargs: :class:`mmseg.models.decode_heads.decode_head.BaseDecodeHead` arguments
            (``num_classes``, ``in_index``, ``loss_decode``, ``align_corners``...).
            ``channels`` and ``dropout_ratio`` are fixed by the head (no hidden layer).

    Shapes:
        ``forward(inputs)``: the backbone's tuple; ``inputs[in_index]`` ``(B, in_channels,
        h, w)`` -> logits ``(B, num_classes, h, w)`` (same grid).
    """

    def __init__(self, in_channels: int, dilations: Sequence[int] = (6, 12, 18, 24),
                 **kwargs) -> None:
        for fixed in ('channels', 'dropout_ratio'):
            if fixed in kwargs:
                raise TypeError(f'DLV2Head has no {fixed!r}: its branches map the feature '
                                'straight to class logits')
        kwargs.setdefault('init_cfg', dict(type='Normal', std=0.01, bias=0, layer='Conv2d'))
        super().__init__(in_channels, channels=in_channels, dropout_ratio=0.0, **kwargs)
        del self.conv_seg  # BaseDecodeHead's 1x1 classifier: the branches are the classifier
        if not dilations:
            raise ValueError('DLV2Head needs at least one dilation')
        self.dilations = tuple(int(d) for d in dilations)
        self.aspp = nn.ModuleList(
            nn.Conv2d(in_channels, self.out_channels, 3, padding=d, dilation=d, bias=True)
            for d in self.dilations)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum of the branch logits; see the class docstring for shapes."""
        x = self._transform_inputs(inputs)
        out = self.aspp[0](x)
        for branch in self.aspp[1:]:
            out = out + branch(x)
        return out
