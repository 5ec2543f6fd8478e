"""Prepare MS-COCO 2014 for WSSS: semantic masks, image lists, image-level labels.

Usage:
    python tools/dataset_converters/coco14.py ROOT [--splits train2014 val2014]
        [--crowd-ignore] [--workers 4] [--overwrite]
    python tools/dataset_converters/coco14.py ROOT --labels-from-clip-es train.txt val.txt
    python tools/dataset_converters/coco14.py ROOT --labels-from-irn cls_labels_coco.npy
ROOT holds train2014/, val2014/ and annotations/instances_{train,val}2014.json. Writes
ROOT/SegmentationClass/{train2014,val2014}/*.png (0 background, 1..80, 255 ignore),
ROOT/SegmentationClass/coco14_id_map.json, ROOT/ImageSets/Segmentation/{train,val}.txt and
ROOT/cls_labels.npy; see s2c.datasets.converters.coco14 for the rules. The importers write
ROOT/cls_labels.npy from another project's label files instead (for the listed images).
Reruns keep the masks already written. Exit status: 0 done, 1 some images failed, 2 bad input.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.datasets import read_split, save_cls_labels  # noqa: E402
from s2c.datasets.converters.coco14 import (  # noqa: E402
    LIST_NAMES,
    SPLIT_DIR,
    SPLITS,
    COCOLayoutError,
    convert_coco14,
    labels_from_clip_es,
    labels_from_irn,
)


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('root')
    p.add_argument('--splits', nargs='+', default=list(SPLITS), choices=SPLITS)
    p.add_argument('--crowd-ignore', action='store_true',
                   help='paint crowd regions 255 (default: as their class)')
    p.add_argument('--workers', type=int, default=4)
    p.add_argument('--overwrite', action='store_true', help='rewrite existing masks')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--labels-from-clip-es', nargs='+', metavar='LIST',
                     help='CLIP-ES split files ("name idx ...", 0-based) -> cls_labels.npy')
    src.add_argument('--labels-from-irn', metavar='NPY',
                     help="IRN's int-keyed cls_labels_coco.npy -> cls_labels.npy for the lists")
    args = p.parse_args(argv)
    out = osp.join(args.root, 'cls_labels.npy')
    try:
        if args.labels_from_clip_es:
            labels = labels_from_clip_es(args.labels_from_clip_es)
            save_cls_labels(out, labels)
            print(f'wrote {out}: {len(labels)} images')
            return 0
        if args.labels_from_irn:
            names = [n for s in args.splits
                     for n in read_split(osp.join(args.root, SPLIT_DIR, LIST_NAMES[s] + '.txt'))]
            labels = labels_from_irn(args.labels_from_irn, names)
            save_cls_labels(out, labels)
            print(f'wrote {out}: {len(labels)} images')
            return 0
        summary = convert_coco14(args.root, args.splits, crowd_ignore=args.crowd_ignore,
                                 workers=args.workers, overwrite=args.overwrite)
    except (COCOLayoutError, FileNotFoundError, ValueError, KeyError) as e:
        print(f'error: {e.args[0] if isinstance(e, KeyError) and e.args else e}',
              file=sys.stderr)
        return 2
    for split, n in summary.splits.items():
        print(f'{split}: {n} images listed ({summary.skipped_no_annotation[split]} without '
              'annotations left out)')
    print(f'masks: {summary.written} written, {summary.existing} already there; '
          f'{summary.num_classes} classes; files: {", ".join(summary.files)}')
    if not summary.ok:
        print('error: ' + summary.failures.format(), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
