"""Write a tiny synthetic MS-COCO 2014 (real layout and annotation format) to try the COCO
tools without the dataset: 6 train and 3 val images of 64 x 80 px, the 80 real categories,
polygon / RLE / crowd annotations, unannotated images (see s2c.datasets.coco_synthetic).

Usage:
    python tools/dataset_converters/make_synthetic_coco14.py OUT [--seed 0]
Then: python tools/dataset_converters/coco14.py OUT
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.datasets.coco_synthetic import make_synthetic_coco14  # noqa: E402


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    counts = make_synthetic_coco14(args.out, seed=args.seed)
    print(f'wrote {args.out}: ' + ', '.join(f'{s} {n} images' for s, n in counts.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
