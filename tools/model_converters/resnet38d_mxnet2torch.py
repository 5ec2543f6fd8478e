"""Convert the MXNet ImageNet ResNet-38 weights into a PSA/S2C torch state dict.

Usage::

    python tools/model_converters/resnet38d_mxnet2torch.py \
        ilsvrc-cls_rna-a1_cls1000_ep-0001.params resnet38d_imagenet.pth

Parses MXNet's NDArray-list format directly (mxnet is not needed), renames the
parameters to PSA's names (``conv1a.weight``, ``b2.bn_branch2a.weight``, ...,
``bn7.running_var``), drops the ImageNet classifier ``linear1000`` and checks
the result strictly against ``ResNet38d(width).state_dict()`` (keys and shapes;
BatchNorm ``num_batches_tracked`` is not part of the file). The output is
written atomically and loads with ``torch.load(path, weights_only=True)``.
"""
from __future__ import annotations

import argparse
import sys

import torch

from s2c.apis.cli import cli_entry
from s2c.models.backbones.mxnet_params import MXNetParamsError, convert_params_file
from s2c.models.backbones.resnet38d import ResNet38d


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='MXNet .params file (ilsvrc-cls_rna-a1_cls1000_ep-0001.params)')
    parser.add_argument('dst', help='output torch state dict (.pth)')
    parser.add_argument('--width', type=float, default=1.0,
                        help='channel multiplier of the ResNet38d to check against (default 1.0)')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the key/shape check against ResNet38d')
    return parser.parse_args(argv)


def reference_shapes(width: float) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``ResNet38d(width)`` without ``num_batches_tracked``."""
    with torch.device('meta'):  # shapes only, no memory
        model = ResNet38d(width=width)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith('num_batches_tracked')}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reference = None if args.no_check else reference_shapes(args.width)
    try:
        counts = convert_params_file(args.src, args.dst, reference=reference)
    except FileNotFoundError:
        print(f'error: {args.src} not found', file=sys.stderr)
        return 1
    except (MXNetParamsError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f'error: {msg}', file=sys.stderr)
        return 1
    check = 'not checked' if reference is None else \
        f'matches ResNet38d(width={args.width}) strictly'
    print(f'read {counts["arrays"]} arrays from {args.src}; dropped {counts["dropped"]} '
          f'(linear1000); wrote {counts["tensors"]} tensors ({counts["elements"]:,} values) '
          f'to {args.dst}; key set {check}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
