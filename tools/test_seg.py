"""Score a trained segmentation network on val: single scale, multi-scale + flip, dense CRF.

Usage:
    python tools/test_seg.py CONFIG CHECKPOINT [--modes ss msf msf_crf] [--out DIR]
        [--scales 0.5 0.75 1 1.25 1.5 1.75] [--work-dir DIR] [--data-root DIR]
        [--cfg-options k=v ...]
Modes: ss (full image), ss_crf (+ dense CRF), msf (multi-scale + flip, mean of softmax),
msf_crf (+ dense CRF on the merged probabilities). Each mode is one pass of mmseg's test loop
with its IoU metric; the per-class table of all modes is printed and written to
<work_dir>/test_results.{md,json}. --out writes each mode's predictions as VOC-palette PNGs to
<out>/<mode>/.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

from s2c.apis import load_config  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.segmentation import MS_SCALES, TEST_MODES, test_segmentor  # noqa: E402


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--modes', nargs='+', default=['ss', 'msf', 'msf_crf'],
                        choices=sorted(TEST_MODES))
    parser.add_argument('--scales', nargs='+', type=float, default=list(MS_SCALES),
                        help='scales of the multi-scale modes')
    parser.add_argument('--out', help='write predictions to <out>/<mode>/<name>.png')
    parser.add_argument('--work-dir')
    parser.add_argument('--data-root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
        cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
            'work_dirs', osp.splitext(osp.basename(args.config))[0])
        test_segmentor(cfg, args.checkpoint, modes=args.modes, scales=args.scales,
                       out_dir=args.out)
    except (FileNotFoundError, KeyError) as e:
        print(f'error: {e.args[0] if isinstance(e, KeyError) else e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    sys.exit(main())
