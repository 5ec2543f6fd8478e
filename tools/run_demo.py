"""The embedded demo (`make demo`): generate the synthetic dataset, train the demo's
class-agnostic SAM on its train objects, train CAM / +SSC / S2C, report mIoU.

Usage:
    python tools/run_demo.py [--work-root work_dirs] [--data-root data/demo] [--jobs N]
                             [--felzenszwalb]

Rows train two at a time on a machine with 2 or more cores (one worker process each); the
rows that use the demo SAM start once it is trained. Each row logs to <work_dir>/demo.log.
--felzenszwalb adds the cheap-segment ablation (SSC on Felzenszwalb segments instead of the
demo SAM's; about 7 more minutes on 2 cores).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.demo import run_demo  # noqa: E402

CAM_DEMO = 'configs/demo/cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py'
S2C_DEMO = 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128_demo-sam.py'
FELZENSZWALB_DEMO = 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py'
DEMO_CONFIGS = {
    'CAM baseline': dict(config=CAM_DEMO, work_dir='cam_demo'),
    '+ SSC on the demo SAM\'s segments (no CPM)': dict(
        config=S2C_DEMO, cfg_options={'model.cpm': None}, work_dir='s2c_demo_sam_ssc_only'),
    'S2C: + SSC + CPM with the demo SAM': dict(config=S2C_DEMO, work_dir='s2c_demo_sam',
                                               sam_pseudo_labels=True),
}
FELZENSZWALB_ROW = {
    '+ SSC on Felzenszwalb segments (cheap-segment ablation)': dict(
        config=FELZENSZWALB_DEMO, cfg_options={'model.cpm': None},
        work_dir='s2c_demo_ssc_only'),
}


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-root', default='work_dirs')
    parser.add_argument('--data-root', default='data/demo')
    parser.add_argument('--jobs', type=int, default=None,
                        help='rows trained at once (default: 2 on a machine with 2+ cores)')
    parser.add_argument('--felzenszwalb', action='store_true',
                        help='add the row of SSC on Felzenszwalb segments (about 7 min more)')
    args = parser.parse_args(argv)
    rows = DEMO_CONFIGS | (FELZENSZWALB_ROW if args.felzenszwalb else {})
    run_demo(rows, work_root=args.work_root, data_root=args.data_root, jobs=args.jobs)


if __name__ == '__main__':
    sys.exit(main())
