"""Train the demo's class-agnostic SAM (tiny, 256 px) on the demo train split's object masks.

Usage:
    python tools/train_demo_sam.py [--data-root data/demo]
        [--out work_dirs/demo_sam/sam_tiny_demo.pth] [--steps 500] [--seed 0]
Reads only JPEGImages/ and SegmentationObject/ of the train list (no class labels, no val
images); writes an official-format SAM checkpoint (loaded strictly by the SAM builder) and a
manifest next to it, then prints the single-point mIoU on the val objects (a random SAM's too).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.demo_sam import (  # noqa: E402
    load_instance_set,
    single_point_miou,
    train_demo_sam,
)
from s2c.sam.build import build_sam  # noqa: E402


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--out', default='work_dirs/demo_sam/sam_tiny_demo.pth')
    p.add_argument('--steps', type=int, default=500)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    try:
        manifest = train_demo_sam(args.data_root, args.out, steps=args.steps, seed=args.seed)
        val = load_instance_set(args.data_root, 'val', progress=False)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    trained = single_point_miou(build_sam('tiny', args.out, device='cpu'), val)
    random = single_point_miou(build_sam('tiny', None, device='cpu', seed=args.seed), val)
    print(f'demo SAM -> {args.out} ({manifest["wall_s"]:.0f} s, {manifest["objects"]} train '
          f'objects); single-point mIoU on the val objects: {trained:.2f} '
          f'(random tiny SAM: {random:.2f})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
