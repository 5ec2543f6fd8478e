"""Generate the synthetic demo dataset (VOC layout) used by `make demo` and the tests.

Usage:
    python tools/make_demo_data.py [--out data/demo] [--seed 0] [--num-train 240] [--num-val 60]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.datasets.demo import make_demo_dataset  # noqa: E402


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    args = parser.parse_args(argv)
    summary = make_demo_dataset(args.out, seed=args.seed, num_train=args.num_train,
                                num_val=args.num_val)
    print(f'demo dataset in {args.out}: {summary["num_train"]} train / {summary["num_val"]} val '
          f'images; images per class: {summary["images_per_class"]}')


if __name__ == '__main__':
    sys.exit(main())
