"""Key conversion between the caffe-converted DeepLab ResNet-101 init and mmseg's ``ResNet``.

Most DeepLabV2 papers in WSSS start from ``deeplabv1_resnet101-imagenet.pth`` or
``deeplabv1_resnet101-coco.pth``: DeepLab's caffe ResNet-101 as converted by
kazuto1011/deeplab-pytorch (``convert.py``; key names of its ``models/resnet.py``). Those
files name the stem ``layer1.conv1.{conv,bn}`` and the residual stages ``layer2..layer5``,
blocks ``block1..blockN`` with ``reduce`` (1x1, carries the stride: caffe style),
``conv3x3``, ``increase`` and, in the first block, ``shortcut``; each a ``.conv.weight``
(no bias) and a ``.bn.*``. mmseg's ``ResNet(depth=101, style='caffe')`` holds the same
tensors as ``conv1``/``bn1`` and ``layer1..layer4.<i>.{conv1,conv2,conv3,bn1,bn2,bn3,
downsample.0,downsample.1}``. The classifier (``fc.*`` of the COCO file, 91 classes, or
``aspp.*``) is not part of the backbone and is dropped: the DeepLabV2 head starts from
N(0, 0.01), as in deeplab-pytorch (``main.py`` loads the init non-strictly "to skip ASPP").

Two small differences from deeplab-pytorch remain and are documented in the configs: its
stem max-pool rounds up (``ceil_mode=True``; both pad by 1), mmseg's rounds down; and its
poly schedule
steps every 10 iterations.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from mmseg.models.backbones import ResNet

from s2c.utils.checkpoint import load_state_dict_strict, read_state_dict
from s2c.utils.fileio import atomic_write

_BLOCK_PARTS = {'reduce': '1', 'conv3x3': '2', 'increase': '3'}
_CAFFE_BLOCK = re.compile(r'^layer([2-5])\.block(\d+)\.(reduce|conv3x3|increase|shortcut)'
                          r'\.(conv|bn)\.(.+)$')
_MMSEG_BLOCK = re.compile(r'^layer([1-4])\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(.+)$')
#: Prefixes of whole-model files (a trained DeepLab ``base.``, a DataParallel ``module.``).
_PREFIXES = ('module.', 'base.')
#: Classifier keys of the init files, not part of the backbone.
_CLASSIFIER = re.compile(r'^(fc|aspp)\.')


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def caffe_key_to_mmseg(key: str) -> str | None:
    """One deeplab-pytorch key -> the mmseg ``ResNet`` key; ``None`` for a classifier key.

    Raises:
        KeyError: For a key that is neither backbone nor classifier.
    """
    key = _strip(key)
    if _CLASSIFIER.match(key):
        return None
    if key.startswith('layer1.conv1.conv.'):
        return 'conv1.' + key[len('layer1.conv1.conv.'):]
    if key.startswith('layer1.conv1.bn.'):
        return 'bn1.' + key[len('layer1.conv1.bn.'):]
    m = _CAFFE_BLOCK.match(key)
    if m is None:
        raise KeyError(f'{key!r} is not a key of a deeplab-pytorch ResNet-101')
    stage, block, part, kind, leaf = m.groups()
    prefix = f'layer{int(stage) - 1}.{int(block) - 1}.'
    if part == 'shortcut':
        return prefix + ('downsample.0.' if kind == 'conv' else 'downsample.1.') + leaf
    return prefix + f'{kind}{_BLOCK_PARTS[part]}.' + leaf


def mmseg_key_to_caffe(key: str) -> str:
    """The inverse of :func:`caffe_key_to_mmseg` on backbone keys.

    Raises:
        KeyError: For a key that is not an mmseg ``ResNet`` key.
    """
    if key.startswith('conv1.'):
        return 'layer1.conv1.conv.' + key[len('conv1.'):]
    if key.startswith('bn1.'):
        return 'layer1.conv1.bn.' + key[len('bn1.'):]
    m = _MMSEG_BLOCK.match(key)
    if m is None:
        raise KeyError(f'{key!r} is not a key of an mmseg ResNet')
    stage, block, part, leaf = m.groups()
    prefix = f'layer{int(stage) + 1}.block{int(block) + 1}.'
    if part.startswith('downsample'):
        return prefix + ('shortcut.conv.' if part.endswith('0') else 'shortcut.bn.') + leaf
    kind, index = part[:-1], part[-1]
    name = {v: k for k, v in _BLOCK_PARTS.items()}[index]
    return prefix + f'{name}.{kind}.' + leaf


def caffe_to_mmseg(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert a deeplab-pytorch ResNet-101 state dict to mmseg ``ResNet`` keys.

    Floating tensors become float32 (the converter stores BN statistics as float64).

    Args:
        state: ``key -> tensor`` of ``deeplabv1_resnet101-{imagenet,coco}.pth`` (or of a
            trained deeplab-pytorch model: ``base.``/``module.`` prefixes are stripped).

    Returns:
        tuple: ``(backbone state dict, dropped classifier keys)``; load the first into
        ``ResNet(depth=101, style='caffe')`` (mmseg).

    Raises:
        KeyError: Unknown keys (all listed), or two keys mapping to the same name.
    """
    out: dict[str, torch.Tensor] = {}
    dropped, unknown = [], []
    for key, value in state.items():
        try:
            new = caffe_key_to_mmseg(key)
        except KeyError:
            unknown.append(key)
            continue
        if new is None:
            dropped.append(key)
            continue
        if new in out:
            raise KeyError(f'{key!r} and another key both map to {new!r}')
        out[new] = value.float() if value.is_floating_point() else value
    if unknown:
        raise KeyError(f'{len(unknown)} keys are not deeplab-pytorch ResNet-101 keys: '
                       f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}')
    return out, dropped


def mmseg_to_caffe(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg ``ResNet`` backbone keys -> deeplab-pytorch keys (the inverse of
    :func:`caffe_to_mmseg` without the classifier).

    Raises:
        KeyError: For a key that is not an mmseg ``ResNet`` key.
    """
    return {mmseg_key_to_caffe(k): v for k, v in state.items()}


def convert_caffe_resnet101(src: str, dst: str) -> tuple[int, list[str]]:
    """Convert a deeplab-pytorch ResNet-101 init file for mmseg's ``ResNet`` and save it.

    The converted dict is checked strictly (keys and shapes) against
    ``ResNet(depth=101, style='caffe')`` (BN ``num_batches_tracked`` may be absent), then
    written atomically as a plain state dict (``torch.load(weights_only=True)`` reads it).

    Args:
        src: ``deeplabv1_resnet101-{imagenet,coco}.pth``.
        dst: Output file.

    Returns:
        tuple: ``(number of tensors written, dropped classifier keys)``.

    Raises:
        FileNotFoundError: ``src`` missing.
        KeyError: Unknown keys, or a key set that does not match ResNet-101.
        ValueError: Wrong shapes (names the file).
        RuntimeError: An unreadable or non-torch file (names the file).
    """
    state, dropped = caffe_to_mmseg(read_state_dict(src, 'DeepLab ResNet-101 init'))
    reference = ResNet(depth=101, style='caffe')
    load_state_dict_strict(reference, state, src, optional=lambda k: k.endswith(
        'num_batches_tracked'), hint='Is it a deeplab-pytorch ResNet-101 init file?')
    with atomic_write(dst) as tmp:
        torch.save(state, tmp)
    return len(state), dropped
