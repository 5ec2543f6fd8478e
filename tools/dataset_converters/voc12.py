"""Prepare PASCAL VOC 2012 for CAM training: cls_labels.npy (+ train_aug.txt with SBD).

Usage:
    python tools/dataset_converters/voc12.py ROOT [--sbd SBD_ROOT] [--out DIR]
ROOT is VOCdevkit/VOC2012; SBD_ROOT is benchmark_RELEASE/dataset.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.datasets.voc12_converter import convert_voc12  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('root', help='VOCdevkit/VOC2012')
    parser.add_argument('--sbd', help='SBD benchmark_RELEASE/dataset (writes train_aug.txt)')
    parser.add_argument('--out', help='output folder (default: ROOT)')
    args = parser.parse_args(argv)
    summary = convert_voc12(args.root, args.sbd, args.out)
    print(f'labels from {summary["label_source"]}: {summary["num_labelled"]} images')
    print('images per split:')
    for split, n in sorted(summary['splits'].items()):
        print(f'  {split:<12}{n:>7}')
    print('images per class (all listed images):')
    for cls, n in summary['class_counts'].items():
        print(f'  {cls:<12}{n:>7}')
    for f in summary['files']:
        print(f'wrote {f}')


if __name__ == '__main__':
    main()
