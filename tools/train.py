"""Train a CAM classifier (CAM baseline or S2C) with MMEngine.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--data-root DIR] [--cfg-options k=v ...] [--launcher {none,pytorch,slurm}]
Multi-GPU: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch
"""
import argparse
import os
import os.path as osp
import shlex
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from s2c.apis import build_train_config, train  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.engine import NonFiniteLossError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='output folder (default work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint of the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA)')
    parser.add_argument('--data-root', help='set data_root of every dataset')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def cfg_option_value(value) -> str:
    """``value`` written back in ``--cfg-options`` syntax (lists as ``[a,b]``, no spaces)."""
    if isinstance(value, (list, tuple)):
        inner = ','.join(cfg_option_value(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    return str(value)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    cfg = build_train_config(args.config, work_dir=args.work_dir, resume=args.resume,
                             amp=args.amp, cfg_options=args.cfg_options,
                             launcher=args.launcher, data_root=args.data_root)
    cache_args = []
    if args.data_root:
        cache_args.append(f'--data-root {args.data_root}')
    if args.cfg_options:
        cache_args.append('--cfg-options ' + ' '.join(
            shlex.quote(f'{k}={cfg_option_value(v)}') for k, v in args.cfg_options.items()))
    try:
        train(cfg, cache_cli_args=' '.join(cache_args))
    except NonFiniteLossError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    sys.exit(main())
