"""Train a segmentation network (DeepLab, mmseg) on pseudo-labels.

Usage:
    python tools/train_seg.py CONFIG [--pseudo-labels DIR] [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--data-root DIR] [--cfg-options k=v ...] [--launcher {none,pytorch,slurm}]
Multi-GPU: tools/dist_train.sh CONFIG GPUS [options] (torchrun + --launcher pytorch).
Before iteration 1 every training image must have a pseudo-label PNG in the folder (the error
names the missing ones and the command that writes them).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


from s2c.apis import build_train_config  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.config import add_train_args, parse_train_args  # noqa: E402
from s2c.apis.segmentation import set_pseudo_label_dir, train_segmentor  # noqa: E402
from s2c.engine import NonFiniteLossError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(parser)  # config is a configs/deeplab config
    parser.add_argument('--pseudo-labels', metavar='DIR',
                        help='pseudo-label PNG folder of the training list (tools/'
                             'make_pseudo_labels.py --out); default: the config\'s')
    return parse_train_args(parser, argv)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_train_config(args.config, work_dir=args.work_dir, resume=args.resume,
                                 amp=args.amp, cfg_options=args.cfg_options,
                                 launcher=args.launcher, data_root=args.data_root)
        if args.pseudo_labels:
            set_pseudo_label_dir(cfg, args.pseudo_labels)
        train_segmentor(cfg)
    except NonFiniteLossError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    except (FileNotFoundError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    sys.exit(main())
