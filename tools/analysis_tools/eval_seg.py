"""Score a folder of label PNGs (predictions / pseudo-labels) against ground truth.

Example::

    W=work_dirs/s2c_resnet38d_1xb8-40e_voc12aug-256x256
    python tools/analysis_tools/eval_seg.py $W/pl_crf \\
        --gt data/VOCdevkit/VOC2012/SegmentationClass \\
        --split data/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt --json pl_crf.json

Counts like mmsegmentation's IoUMetric (predictions of 255 count as misses). Exit status 0
when every listed image was scored, 1 when some were missing or invalid (listed; the rest
is still scored), 2 for bad usage.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from s2c.apis.cli import cli_entry
from s2c.datasets import read_split
from s2c.datasets.paths import split_file
from s2c.evaluation.folder_eval import evaluate_folder, save_eval_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('pred_dir', help='folder of <name>.png predictions')
    p.add_argument('--gt', help='folder of <name>.png ground truth (default with --data-root: '
                                '<data-root>/SegmentationClass)')
    p.add_argument('--split', required=True,
                   help='image list file (bare ids or PSA lines), or with --data-root a split '
                        'name (<data-root>/ImageSets/Segmentation/NAME.txt)')
    p.add_argument('--data-root', help='dataset root (VOC layout) for --gt and --split names')
    p.add_argument('--num-classes', type=int, default=21, help='classes incl. background')
    p.add_argument('--ignore-index', type=int, default=255)
    p.add_argument('--json', metavar='OUT', help='write scores, per-class table and failures')
    return p.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        gt, split = args.gt, args.split
        if args.data_root:
            gt = gt or osp.join(args.data_root, 'SegmentationClass')
            split = split_file(args.data_root, split)
        if gt is None:
            raise ValueError('give --gt (the ground-truth folder) or --data-root')
        names = read_split(split)
        result = evaluate_folder(args.pred_dir, gt, names, args.num_classes,
                                 ignore_index=args.ignore_index)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if result.num_images == 0:
        entries = result.failures.entries
        reasons = ', '.join(f'{r} {len(v)}' for r, v in entries.items())
        first = next(iter(entries.values()))[0] if entries else ('-', 'empty list')
        print(f'error: no image could be scored: all {len(names)} failed ({reasons}); '
              f'first: {first[0]}: {first[1]}', file=sys.stderr)
        return 1
    print(result.table())
    print(f'mIoU {100 * result.scores["miou"]:.2f} over {result.num_images}/{len(names)} images')
    if args.json:
        save_eval_json(result, args.json, pred_dir=args.pred_dir, gt_dir=gt, split=split)
    if not result.ok:
        print(result.failures.format(), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
