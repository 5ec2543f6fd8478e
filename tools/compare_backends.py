"""Compare SAM decoder variants (prompt back-ends) as pseudo-label makers for the same CAMs.

Usage:
    python tools/compare_backends.py CONFIG --cams DIR --backends sam hq_sam robust_sam \\
        robust_sam_clear persam persam_f [--policies NAME ...] [--split train] \\
        [--degrade NAME[:LEVEL] ...] [--out DIR]

A back-end is NAME (CONFIG's model.cpm with that back-end type) or NAME=S2C_CONFIG (that
config's back-end, embedding cache and policy, e.g.
hq_sam=configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256_hq-sam.py). Writes the
pseudo-labels of every variant, results.md, results.csv, miou_time.png and, with --degrade,
miou_vs_degradation.png into --out. Reruns reuse the finished variants whose settings did not
change. Degradations: gaussian_blur, motion_blur, gaussian_noise, low_light, jpeg, haze, rain
(levels 1-5; all five without :LEVEL).
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from s2c.apis import load_config  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.compare import REFERENCE_METHODS, run_comparison  # noqa: E402
from s2c.caches.preflight import MissingCacheError  # noqa: E402
from s2c.evaluation.comparison import comparison_markdown  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='S2C config (dataset, caches, model.cpm)')
    p.add_argument('--cams', required=True, help='CAM folder (tools/test.py)')
    p.add_argument('--backends', nargs='+', default=['sam'], metavar='NAME[=CONFIG]')
    p.add_argument('--policies', nargs='+', default=[], help='selection policies to try')
    p.add_argument('--split', help='split name or list file (default: the dataset\'s)')
    p.add_argument('--degrade', nargs='+', default=[], metavar='NAME[:LEVEL]')
    p.add_argument('--degrade-seed', type=int, default=0)
    p.add_argument('--degrade-cams', action='store_true',
                   help='CAMs of the degraded images too (needs --checkpoint)')
    p.add_argument('--checkpoint', help='classifier checkpoint (for --degrade-cams)')
    p.add_argument('--references', nargs='*', default=list(REFERENCE_METHODS),
                   help=f'reference methods from the same CAMs (default {REFERENCE_METHODS})')
    p.add_argument('--bg-threshold', type=float,
                   help='background threshold (default: <cams>/cam_eval.json)')
    p.add_argument('--from-work-dirs', nargs='+', default=[],
                   help='S2C training folders whose CAM mIoU joins the table')
    p.add_argument('--out', default='work_dirs/compare_backends')
    p.add_argument('--title', help='title of the tables and plots')
    p.add_argument('--data-root', help='move the configs to this dataset root')
    p.add_argument('--device', default='auto')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='overrides for CONFIG and every NAME=CONFIG')
    return p.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    """Run the comparison; exit 2 with the command to run when a cache is missing."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
        rows = run_comparison(
            cfg, args.cams, args.out, backends=args.backends, policies=args.policies,
            split=args.split, degradations=args.degrade, degradation_seed=args.degrade_seed,
            degrade_cams=args.degrade_cams, checkpoint=args.checkpoint,
            references=args.references, bg_threshold=args.bg_threshold,
            from_work_dirs=args.from_work_dirs, cfg_options=args.cfg_options,
            data_root=args.data_root, device=args.device, title=args.title)
    except (MissingCacheError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(comparison_markdown(rows))
    print(f'written to {args.out}: results.md, results.csv, miou_time.png'
          + (', miou_vs_degradation.png' if args.degrade else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
