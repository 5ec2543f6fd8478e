"""Convert DeepLab's caffe ResNet-101 init (deeplab-pytorch format) for mmseg's ResNet.

Usage::

    python tools/model_converters/deeplab_resnet101_caffe2mmseg.py \
        deeplabv1_resnet101-imagenet.pth checkpoints/deeplabv1_resnet101-imagenet_mmseg.pth

The input is ``deeplabv1_resnet101-imagenet.pth`` or ``deeplabv1_resnet101-coco.pth``
(kazuto1011/deeplab-pytorch key names), the init most DeepLabV2 WSSS papers use. The output
is a plain state dict for ``ResNet(depth=101, style='caffe')`` of mmseg, checked strictly
against that model (keys and shapes); the classifier (``fc.*``/``aspp.*``) is dropped. It is
written atomically and loads with ``torch.load(path, weights_only=True)``. Use it through
``configs/deeplab/deeplabv2_r101-caffe-d8_1xb10-20k_voc12aug-pseudo-321x321.py``.

Never use the COCO-pretrained init for COCO experiments (it has seen COCO masks), and do not
compare VOC numbers obtained with it with numbers obtained from an ImageNet init.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.models.segmentation.caffe_resnet import convert_caffe_resnet101  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='deeplabv1_resnet101-{imagenet,coco}.pth')
    parser.add_argument('dst', help='output state dict for mmseg ResNet(depth=101, style=caffe)')
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        count, dropped = convert_caffe_resnet101(args.src, args.dst)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f'error: {msg}', file=sys.stderr)
        return 2
    print(f'wrote {count} tensors to {args.dst} (matches mmseg ResNet-101 caffe style '
          f'strictly); dropped {len(dropped)} classifier keys {dropped[:4]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
