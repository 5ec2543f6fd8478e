"""Prepare PASCAL VOC 2012 for CAM training: cls_labels.npy (+ train_aug.txt with SBD).

Usage:
    python tools/dataset_converters/voc12.py ROOT [--sbd SBD_ROOT] [--out DIR]
ROOT is VOCdevkit/VOC2012; SBD_ROOT is benchmark_RELEASE/dataset.

Images that cannot be labelled (missing JPEG, unreadable or corrupt XML/mask,
mask values outside {0..20, 255}) are listed by file and reason and left out;
cls_labels.npy is written for the others. Images with no foreground class are
only a warning (their all-zero label is written; the dataset skips them).

Exit status: 0 all images labelled, 1 some images failed (see the list on
stderr), 2 ROOT or SBD_ROOT does not have the expected layout (nothing written).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.datasets.converters.voc12 import VOCLayoutError, convert_voc12  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('root', help='VOCdevkit/VOC2012')
    parser.add_argument('--sbd', help='SBD benchmark_RELEASE/dataset (writes train_aug.txt)')
    parser.add_argument('--out', help='output folder (default: ROOT)')
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    """Run the converter; print the counts and problems.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        int: 0 when every image was labelled, 1 when some failed, 2 on a layout
        error or an output that cannot be written.
    """
    args = parse_args(argv)
    try:
        summary = convert_voc12(args.root, args.sbd, args.out)
    except VOCLayoutError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except OSError as e:
        print(f'error: cannot write the output: {e}', file=sys.stderr)
        return 2
    print(f'labels from {summary.label_source}: {summary.num_labelled} images')
    print('images per split:')
    for split, n in sorted(summary.splits.items()):
        print(f'  {split:<12}{n:>7}')
    print('images per class (all listed images):' if summary.ok else
          'images per class (labelled images):')
    for cls, n in summary.class_counts.items():
        print(f'  {cls:<12}{n:>7}')
    for f in summary.files:
        print(f'wrote {f}')
    problems = summary.format_problems()
    if problems:
        print(problems, file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == '__main__':
    sys.exit(main())
