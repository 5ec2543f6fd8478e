"""Write CAM stand-ins made from ground truth (a CAM folder for tools that need one when no
trained classifier is at hand; see s2c.cam.gt_standins).

Usage:
    python tools/analysis_tools/gt_standin_cams.py ROOT --split val --out DIR [--sigma 4]
ROOT is VOCdevkit/VOC2012 (SegmentationClass and ImageSets/Segmentation are read).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.cam import write_gt_standin_cams  # noqa: E402
from s2c.datasets import dataset_paths  # noqa: E402


@cli_entry
def main(argv: list[str] | None = None) -> int:
    """Write the stand-ins; exit 1 when an image had no ground truth."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('root', help='VOCdevkit/VOC2012')
    p.add_argument('--split', default='train', help='split name or list file')
    p.add_argument('--out', required=True, help='CAM folder to write')
    p.add_argument('--sigma', type=float, default=4.0, help='blur of the distance transform')
    p.add_argument('--num-classes', type=int, default=20)
    args = p.parse_args(argv)
    paths = dataset_paths(dict(data_root=args.root), split=args.split)
    summary = write_gt_standin_cams(paths.seg_dir, paths.names(), args.out,
                                    num_classes=args.num_classes, sigma=args.sigma)
    print(summary.format())
    return 0 if summary.ok else 1


if __name__ == '__main__':
    sys.exit(main())
