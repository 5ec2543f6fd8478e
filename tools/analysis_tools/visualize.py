"""One PNG per image: image | CAM heat map per present class | pseudo-label(s) | ground truth.

Example::

    W=work_dirs/s2c_resnet38d_1xb8-40e_voc12aug-256x256
    python tools/analysis_tools/visualize.py --img-dir data/VOCdevkit/VOC2012/JPEGImages \\
        --cams $W/cams_train --labels $W/pl_crf --gt data/VOCdevkit/VOC2012/SegmentationClass \\
        --split data/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt --max 8 --out $W/vis

Panels whose folder is not given (or whose file is missing) are left out; each panel is
captioned (class names for CAMs). Heat maps are the CAM in [0, 1] through the JET colour
map, blended 50/50 with the image; label maps use the VOC palette (255 = light grey) and
are resized with nearest neighbour.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

from tqdm import tqdm

from s2c.apis.cli import cli_entry
from s2c.datasets import read_split
from s2c.datasets.paths import split_file
from s2c.utils import atomic_write
from s2c.visualization import render_grid, stack_rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--img-dir', help='image folder (default with --data-root: '
                                     '<data-root>/JPEGImages)')
    p.add_argument('--data-root', help='dataset root (VOC layout): default --img-dir and --gt, '
                                       'and --split NAME for ImageSets/Segmentation/NAME.txt')
    p.add_argument('--img-suffix', default='.jpg')
    p.add_argument('--cams', help='folder of <name>.npz CAMs')
    p.add_argument('--labels', nargs='+', metavar='[CAPTION=]DIR',
                   help='folder(s) of pseudo-label PNGs, one panel each in this order; '
                        "'CAPTION=DIR' captions a panel (default caption 'pseudo-label')")
    p.add_argument('--gt', help='folder of ground-truth PNGs')
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument('--names', nargs='+')
    names.add_argument('--split', help='image list file (or a split name with --data-root)')
    p.add_argument('--max', type=int, default=None, help='first N names only')
    p.add_argument('--height', type=int, default=256, help='panel height in pixels')
    p.add_argument('--classes', nargs='+', default=None,
                   help='foreground class names for the CAM captions (default: the 20 VOC '
                        'classes; the demo: disc box triangle ring)')
    p.add_argument('--out', required=True)
    p.add_argument('--stack', metavar='FILE',
                   help='also write all rows stacked into this one PNG (e.g. for a README)')
    return p.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.data_root:
            args.img_dir = args.img_dir or osp.join(args.data_root, 'JPEGImages')
            args.gt = args.gt or osp.join(args.data_root, 'SegmentationClass')
            if args.split:
                args.split = split_file(args.data_root, args.split)
        if not args.img_dir:
            raise FileNotFoundError('give --img-dir (the image folder) or --data-root')
        names = args.names if args.names else read_split(args.split)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    names = names[:args.max] if args.max else names
    labels = [tuple(reversed(x.split('=', 1))) if '=' in x else (x, 'pseudo-label')
              for x in args.labels or ()]
    os.makedirs(args.out, exist_ok=True)
    failed, rows = [], []
    names_kw = dict(class_names=tuple(args.classes)) if args.classes else {}
    for name in tqdm(names, desc='visualize', unit='img'):
        try:
            grid = render_grid(name, args.img_dir, args.img_suffix, args.cams, labels,
                               args.gt, args.height, **names_kw)
        except (FileNotFoundError, ValueError, OSError) as e:
            failed.append(f'{name}: {e}')
            continue
        with atomic_write(osp.join(args.out, name + '.png')) as tmp:
            grid.save(tmp, format='PNG')
        if args.stack:
            rows.append(grid)
    if args.stack and rows:
        with atomic_write(args.stack) as tmp:
            stack_rows(rows).save(tmp, format='PNG', optimize=True)
        print(f'{len(rows)} row(s) stacked into {args.stack}')
    print(f'{len(names) - len(failed)} grid(s) written to {args.out}')
    if failed:
        print(f'{len(failed)} failed:\n  ' + '\n  '.join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
