"""Multi-scale + flip CAMs of a trained classifier, then CAM mIoU with the threshold search.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--split train] [--out DIR]
        [--scales 0.5 1 1.5 2] [--no-flip] [--overwrite] [--device auto] [--data-root DIR]
Writes <out>/<name>.npz (keys: class indices, cams: K x H x W float16) and
<out>/cam_eval.json (bg_threshold, mIoU, per-class IoU). Existing CAM files are skipped.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from s2c.apis import load_config, run_cam_inference  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='our checkpoint or an official S2C net_main.pth')
    parser.add_argument('--split', default='train', help='split name or list file')
    parser.add_argument('--out', help='CAM folder (default <work_dir>/cams_<split>)')
    parser.add_argument('--scales', nargs='+', type=float, default=[0.5, 1.0, 1.5, 2.0])
    parser.add_argument('--no-flip', action='store_true')
    parser.add_argument('--overwrite', action='store_true')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--data-root')
    parser.add_argument('--cls-labels', help='image-level labels (cls_labels.npy) of the split; '
                        "default: the config's test_dataloader.dataset.cls_labels")
    parser.add_argument('--work-dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
        if args.cls_labels:
            cfg.test_dataloader.dataset.cls_labels = osp.abspath(args.cls_labels)
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
            'work_dirs', osp.splitext(osp.basename(args.config))[0])
        result = run_cam_inference(cfg, args.checkpoint, split=args.split, out_dir=args.out,
                                   scales=args.scales, flip=not args.no_flip,
                                   overwrite=args.overwrite, device=args.device)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    summary, ev = result.summary, result.evaluation
    print(f'CAMs in {summary.out_dir}: {len(summary.done)} written, {len(summary.skipped)} '
          f'already there, {summary.failures.count} failed ({summary.wall_s:.1f} s)')
    if ev is not None:
        if ev['scored']:
            print(ev['table'])
            print(f'CAM mIoU {ev["miou"]:.2f} at background threshold {ev["bg_threshold"]:.2f} '
                  f'({ev["scored"]} images scored)')
        else:
            print('CAM mIoU: no image of the split has a ground-truth PNG; nothing scored '
                  '(bg_threshold null in cam_eval.json)')
        if ev['no_gt']:
            shown = ', '.join(ev['no_gt'][:3]) + (' ...' if len(ev['no_gt']) > 3 else '')
            print(f'  {len(ev["no_gt"])} image(s) without ground truth, not scored (normal for '
                  f'train_aug): {shown}')
        for name, reason in ev['failed'].items():
            print(f'  not evaluated: {name}: {reason}')
    for name, reason in summary.failed.items():
        print(f'  failed: {name}: {reason}')
    failed = summary.failed or (ev or {}).get('failed')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    sys.exit(main())
