"""RobustSAM's mask decoder (robustsam/RobustSAM ``robust_segment_anything/modeling/``).

RobustSAM keeps SAM's whole decoder and adds, under ``mask_decoder.`` in its
checkpoints (89 tensors, 9 of them BatchNorm buffers):

- ``custom_robust_token`` ``(4, 256)``: robust output tokens that replace the
  four mask tokens in the two-way transformer;
- ``custom_token_block`` (``TokenBlock``, ``components.py`` 85-104) and
  ``robust_mlp`` (256 -> 256 -> 256 -> 32): the robust token's hypernetwork;
- three anti-degradation blocks (``components.py`` 5-72): ``fourier_first_layer_features``
  on the first global-attention ViT block, ``fourier_last_layer_features`` on
  the image embedding, ``fourier_mask_features`` on SAM's upscaled mask
  features. Each is a selective convolution (a BatchNorm branch and an
  InstanceNorm branch, LeakyReLU, 3x3 convolutions, mixed by a softmax
  selector on a 4 x 4 pooled grid), concatenated with its input and
  re-weighted by squeeze-excitation channel attention, a Fourier block (1x1
  convolution of the FFT magnitude, phase kept, real part of the inverse FFT)
  and a 3x3 convolution, then the block's resampling head.

Per image (:func:`robust_features`, official ``mask_decoder.py`` 112-117):
``first(early) + last(embedding)``, ``(B, 32, 4h, 4w)``. Per prompt
(:func:`decode_batched_robust`, ``predict_masks`` 152-197 with ``clear=False``):
mask features = ``fourier_mask_features(upscaled) + robust features``; the
logit = ``robust_mlp(token_mlp(chunk)) @ mask features``. In the official code
``TokenBlock`` instance-normalises each robust token twice over its 256
dimensions and reshapes it to ``(4, 64)`` before its MLP, so one prompt yields
16 outputs and the one the authors' ``Sam.predict`` / ``eval.py`` keep
(``multimask_output=False``, channel 0) comes from the first 64 dimensions of
robust token 0; more than one prompt per call crashes there.
:func:`decode_batched_robust` computes exactly that output for any number
of prompts. The IoU head is SAM's, never trained for the robust tokens: no IoU
is reported.

BatchNorm: the authors' inference never calls ``.eval()``, so each BatchNorm
normalises one sample (one image, or one prompt's mask features) with its own
statistics and BatchNorm's affine parameters. ``bn_mode='per_sample'`` computes
that for any batch (instance normalisation with the BatchNorm affine);
``'running'`` uses the running statistics (the authors' validation loop). The
module's ``train()``/``eval()`` state plays no part.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from .batched import two_way_batched
from .mask_heads import hypernetwork_logits, upscale_image_tokens

#: How the BatchNorm layers of the anti-degradation blocks normalise.
BN_MODES = ('per_sample', 'running')


def _batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
    """BatchNorm on ``(B, C, H, W)``: each sample's own statistics, or the running ones."""
    if bn_mode == 'per_sample':  # = BatchNorm in training mode on a batch of one sample
        return F.instance_norm(x, weight=bn.weight, bias=bn.bias, eps=bn.eps)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False,
                        eps=bn.eps)


class KernelSelector(nn.Module):
    """Softmax mixing weights of the two branches on a 4 x 4 grid (official ``Selector``).

    Args:
        channels: Channels of each branch.
        reduction: Bottleneck reduction (16).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.grid = 4
        width = channels * self.grid ** 2
        self.fc = nn.Sequential(nn.Linear(width, width // reduction, bias=False), nn.ReLU())
        self.att_conv1 = nn.Linear(width // reduction, width)
        self.att_conv2 = nn.Linear(width // reduction, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` -> two ``(B, C, H, W)`` weights summing to 1."""
        b, c, h, w = x.shape
        y = self.fc(F.adaptive_avg_pool2d(x, self.grid).reshape(b, -1))
        att = torch.stack([self.att_conv1(y), self.att_conv2(y)]).view(2, b, c, self.grid,
                                                                       self.grid)
        att = att.softmax(dim=0)
        scale = (h / self.grid, w / self.grid)
        return (F.interpolate(att[0], scale_factor=scale, mode='nearest'),
                F.interpolate(att[1], scale_factor=scale, mode='nearest'))


class SelectiveConv(nn.Module):
    """A BatchNorm branch and an InstanceNorm branch, mixed by :class:`KernelSelector`."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.selector = KernelSelector(channels, reduction)
        self.BN = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        out1 = self.conv1(F.leaky_relu(_batch_norm(self.BN, x, bn_mode)))
        out2 = self.conv2(F.leaky_relu(F.instance_norm(x)))
        att1, att2 = self.selector(out1 + out2)
        return out1 * att1 + out2 * att2


class _SelectiveKernel(nn.Module):
    """Holds the selective convolution at the official key path ``maxpool_conv.0``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(SelectiveConv(channels))


class ChannelAttention(nn.Module):
    """Squeeze-excitation re-weighting of the channels (official ``CABlock``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.excitation = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                        nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c = x.shape[:2]
        return x * self.excitation(F.adaptive_avg_pool2d(x, 1).view(b, c)).view(b, c, 1, 1)


class DegradationNormalization(nn.Module):
    """``concat(x, selective_conv(x))`` re-weighted by channel attention: C -> 2C channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel_attention = ChannelAttention(2 * channels)
        self.SEMBlock = _SelectiveKernel(channels)

    def forward(self, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 2C, H, W)``."""
        selected = self.SEMBlock.maxpool_conv[0](x, bn_mode)
        return self.channel_attention(torch.cat([x, selected], dim=1))


class FourierMagnitudeConv(nn.Module):
    """1x1 convolution of the FFT magnitude, phase kept (official ``FGMBlock``); in fp32."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)`` real."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            spectrum = torch.fft.fft2(x.float(), dim=(-2, -1))
            magnitude = self.conv_layer(spectrum.abs())
            phase = spectrum.angle()
            spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
            return torch.fft.ifft2(spectrum, dim=(-2, -1)).real


class AntiDegradationBlock(nn.Module):
    """Degradation normalisation + Fourier block + 3x3 conv, then the block's resampling head.

    Args:
        channels: Input channels ``C``.
        head: The resampling head (``C -> 32`` channels).
        head_name: Its official attribute name (``upsample_layer`` / ``downsample_layer``).
    """

    def __init__(self, channels: int, head: nn.Sequential, head_name: str) -> None:
        super().__init__()
        self.dnc_block_combined = DegradationNormalization(channels)
        self.fgm_block = FourierMagnitudeConv(2 * channels)
        self.conv_layer = nn.Conv2d(2 * channels, channels, kernel_size=3, padding=1)
        self.head_name = head_name
        self.add_module(head_name, head)

    def forward(self, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
        """``(B, C, H, W)`` -> the head's output."""
        x = self.conv_layer(self.fgm_block(self.dnc_block_combined(x, bn_mode)))
        return getattr(self, self.head_name)(x)


def _upsample_head(in_channels: int, mid: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_channels, mid, kernel_size=2, stride=2),
                         LayerNorm2d(mid), nn.GELU(),
                         nn.ConvTranspose2d(mid, out, kernel_size=2, stride=2))


class TokenBlock(nn.Module):
    """The robust token's MLP on a 64-d chunk (official ``TokenBlock``: ``mlp`` 64 -> 64 -> 256)."""

    def __init__(self, num_tokens: int = 4, dim: int = 256) -> None:
        super().__init__()
        chunk = dim // num_tokens
        self.chunk = chunk
        self.mlp = nn.Sequential(nn.Linear(chunk, chunk), nn.ReLU(),
                                 nn.Linear(chunk, chunk * num_tokens))

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        """``(N, 256)`` robust token 0 of each prompt -> ``(N, 256)`` (official output channel 0).

        Instance-normalised twice over its 256 dimensions (``InstanceNorm1d`` on a
        2-D input), first 64 dimensions, MLP.
        """
        x = F.instance_norm(F.instance_norm(token[None]))[0]
        return self.mlp(x[:, :self.chunk])


class MaskDecoderRobust(MaskDecoder):
    """segment-anything's ``MaskDecoder`` plus RobustSAM's parts under their official names.

    A RobustSAM checkpoint's ``mask_decoder.*`` tensors load into it key for key.

    Args:
        vit_dim: Channel width of the ViT blocks (vit_b 768, vit_l 1024, vit_h 1280).
        transformer_dim: Decoder width (256).
        **kwargs: ``MaskDecoder`` arguments.
    """

    def __init__(self, *, vit_dim: int, transformer_dim: int = 256, **kwargs) -> None:
        super().__init__(transformer_dim=transformer_dim, **kwargs)
        d = transformer_dim
        self.custom_robust_token = nn.Embedding(self.num_mask_tokens, d)
        self.robust_mlp = MLP(d, d, d // 8, 3)
        self.fourier_mask_features = AntiDegradationBlock(
            d // 8, nn.Sequential(nn.Conv2d(d // 8, d // 4, 3, 1, 1), LayerNorm2d(d // 4),
                                  nn.GELU(), nn.Conv2d(d // 4, d // 8, 3, 1, 1)),
            'downsample_layer')
        self.fourier_first_layer_features = AntiDegradationBlock(
            vit_dim, _upsample_head(vit_dim, d, d // 8), 'upsample_layer')
        self.fourier_last_layer_features = AntiDegradationBlock(
            d, _upsample_head(d, d, d // 8), 'upsample_layer')
        self.custom_token_block = TokenBlock(self.num_mask_tokens, d)


def robust_features(decoder: MaskDecoderRobust, embeddings: torch.Tensor, early: torch.Tensor,
                    bn_mode: str = 'per_sample') -> torch.Tensor:
    """Per-image robust features (official ``mask_decoder.py`` 112-117, ``clear=False``).

    Args:
        decoder: The RobustSAM decoder.
        embeddings: ``(B, 256, h, w)`` image embeddings.
        early: ``(B, h, w, C_vit)`` output of the first global-attention ViT block.
        bn_mode: See :data:`BN_MODES`.

    Returns:
        torch.Tensor: ``(B, 32, 4h, 4w)``.
    """
    return decoder.fourier_first_layer_features(early.permute(0, 3, 1, 2), bn_mode) + \
        decoder.fourier_last_layer_features(embeddings, bn_mode)


def decode_batched_robust(decoder: MaskDecoderRobust, image_embeddings: torch.Tensor,
                          features_robust: torch.Tensor, image_pe: torch.Tensor,
                          sparse: torch.Tensor, dense: torch.Tensor, image_index: torch.Tensor,
                          bn_mode: str = 'per_sample', chunk_size: int = 8) -> torch.Tensor:
    """RobustSAM's robust mask for ``N`` prompts over ``B`` images (``Sam.predict``'s output).

    Args:
        decoder: The RobustSAM decoder.
        image_embeddings: ``(B, 256, h, w)``.
        features_robust: ``(B, 32, 4h, 4w)`` from :func:`robust_features`.
        image_pe: ``(1, 256, h, w)``.
        sparse: ``(N, T, 256)`` sparse prompt embeddings.
        dense: ``(N, 256, h, w)`` dense prompt embeddings.
        image_index: ``(N,)`` long: image of each prompt.
        bn_mode: See :data:`BN_MODES`.
        chunk_size: Prompts whose mask features go through the anti-degradation
            block at once (each holds a ``(64, 4h, 4w)`` complex spectrum).

    Returns:
        torch.Tensor: ``(N, 1, 4h, 4w)`` low-res logits.
    """
    tokens = torch.cat([decoder.iou_token.weight, decoder.custom_robust_token.weight], dim=0)
    hs, keys = two_way_batched(decoder, image_embeddings, image_pe, sparse, dense, image_index,
                               tokens)
    up = upscale_image_tokens(decoder, keys, tuple(image_embeddings.shape[-2:]))
    hyper = decoder.robust_mlp(decoder.custom_token_block(hs[:, 1, :]))[:, None]
    out = []
    for start in range(0, up.shape[0], max(1, int(chunk_size))):
        rows = slice(start, start + max(1, int(chunk_size)))
        mask_features = decoder.fourier_mask_features(up[rows], bn_mode) + \
            features_robust[image_index[rows]]
        out.append(hypernetwork_logits(hyper[rows], mask_features))
    return torch.cat(out)
