"""Train a CAM classifier (CAM baseline or S2C) with MMEngine.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--data-root DIR] [--cfg-options k=v ...] [--launcher {none,pytorch,slurm}]
Multi-GPU: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch
"""
import argparse
import os.path as osp
import shlex
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


from s2c.apis import build_train_config, train  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.config import add_train_args, parse_train_args  # noqa: E402
from s2c.engine import NonFiniteLossError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return parse_train_args(add_train_args(parser), argv)


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
