"""CAMs -> pseudo-label PNGs (VOC palette: 0 background, 1..C, 255 ignore).

Examples::

    python tools/make_pseudo_labels.py CONFIG --cams work_dirs/s2c/cams_train \\
        --out work_dirs/s2c/pl_crf --method crf --alpha 10
    python tools/make_pseudo_labels.py CONFIG --cams DIR --out DIR \\
        --method threshold --bg-threshold-from work_dirs/s2c/cams_train/cam_eval.json

Exit status: 0 all written (or skipped), 1 some images failed (listed), 2 bad usage.
The logic lives in s2c.apis.pseudo_labels.
"""
from __future__ import annotations

import argparse
import sys

from mmengine.config import DictAction

from s2c.apis.cli import cli_entry
from s2c.apis.config import load_config
from s2c.apis.pseudo_labels import pseudo_labels_from_config, sam_method_params
from s2c.cam import CRFParams
from s2c.models.cpm import CONFIDENCE_MODES
from s2c.pseudo_labels import read_bg_threshold
from s2c.registry import LABEL_METHODS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    LABEL_METHODS.import_from_location()
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='config whose train_dataloader.dataset gives data_root, '
                   'ann_file, img_dir, img_suffix (and se_map_dir; model.cpm for sam)')
    p.add_argument('--cams', required=True, help='folder of <name>.npz CAM files (tools/test.py)')
    p.add_argument('--out', required=True, help='output folder for <name>.png')
    p.add_argument('--method', required=True, choices=sorted(LABEL_METHODS.module_dict))
    p.add_argument('--split', help='split name (ImageSets/Segmentation/NAME.txt) or a list file; '
                   'default: the config\'s ann_file')
    p.add_argument('--data-root', help='move the config to this dataset root')
    p.add_argument('--img-dir', help='override the image folder')
    thr = p.add_mutually_exclusive_group()
    thr.add_argument('--bg-threshold', type=float, help='background score (threshold, se_merge)')
    thr.add_argument('--bg-threshold-from', metavar='JSON',
                     help='read the searched threshold from the JSON of tools/test.py')
    p.add_argument('--alpha', type=float, default=CRFParams.alpha,
                   help='CRF background exponent (official 6/10/24; default %(default)s)')
    p.add_argument('--crf-iterations', type=int, default=CRFParams.iterations)
    p.add_argument('--ignore-below', type=float, metavar='P',
                   help='mark pixels whose score (CAM value / CRF probability / segment '
                   'purity, see s2c.pseudo_labels.rules) is below P as 255')
    p.add_argument('--se-dir', help='SE map folder (se_merge; default: the config\'s se_map_dir)')
    p.add_argument('--cls-labels',
                   help="PSA-style cls_labels.npy: a CAM class the image lacks is a failure "
                        "(default: the config dataset's cls_labels.npy when it exists)")
    p.add_argument('--num-classes', type=int,
                   help="foreground classes (default: the config dataset's: VOC 20, COCO 80)")
    p.add_argument('--workers', type=int, default=None,
                   help='processes (default: 4 on CPU; 1 for sam, whose decoder is per process)')
    sam = p.add_argument_group('sam method (CPM at inference; settings from model.cpm)')
    sam.add_argument('--backend', help='prompt back-end type (default: the config\'s)')
    sam.add_argument('--selection', help='mask selection policy, e.g. index2, best_iou, single')
    sam.add_argument('--confidence', choices=CONFIDENCE_MODES)
    sam.add_argument('--embedding-dir', help='SAM embedding cache (default: from the config)')
    sam.add_argument('--device', default='auto', help='device of the SAM decoder')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, e.g. model.cpm.backend.checkpoint=...')
    p.add_argument('--overwrite', action='store_true', help='rewrite existing outputs')
    return p.parse_args(argv)


def method_params(cfg, args: argparse.Namespace) -> dict:
    """The chosen method's parameters from the flags (and, for sam, the config)."""
    if args.method == 'sam':
        return sam_method_params(cfg, backend=args.backend, selection=args.selection,
                                 confidence=args.confidence, embedding_dir=args.embedding_dir,
                                 device=args.device)
    if args.method == 'crf':
        return dict(crf=CRFParams(alpha=args.alpha, iterations=args.crf_iterations))
    bg = read_bg_threshold(args.bg_threshold_from) if args.bg_threshold_from else \
        args.bg_threshold
    return dict(bg_threshold=bg)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
        summary = pseudo_labels_from_config(
            cfg, args.cams, args.out, args.method, split=args.split, img_dir=args.img_dir,
            se_dir=args.se_dir, cls_labels=args.cls_labels, num_classes=args.num_classes,
            ignore_below=args.ignore_below, workers=args.workers, overwrite=args.overwrite,
            **method_params(cfg, args))
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        print(f'error: {e.args[0] if isinstance(e, KeyError) and e.args else e}',
              file=sys.stderr)
        return 2
    print(summary.format())
    return 0 if summary.ok else 1


if __name__ == '__main__':
    sys.exit(main())
