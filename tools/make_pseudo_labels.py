"""CAMs -> pseudo-label PNGs (VOC palette: 0 background, 1..C, 255 ignore).

Examples::

    python tools/make_pseudo_labels.py configs/s2c_voc.py --cams work_dirs/s2c_voc/cams \\
        --out work_dirs/s2c_voc/pl_crf --method crf --alpha 10
    python tools/make_pseudo_labels.py configs/s2c_voc.py --cams DIR --out DIR \\
        --method threshold --bg-threshold-from work_dirs/s2c_voc/cam_eval.json

Exit status: 0 all written (or skipped), 1 some images failed (listed), 2 bad usage.
"""
from __future__ import annotations

import argparse
import os
import sys

from mmengine.config import Config

from s2c.cam import (
    LABEL_METHODS,
    CRFParams,
    dataset_paths,
    make_pseudo_labels,
    read_bg_threshold,
)
from s2c.datasets.voc12 import read_split


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='config whose train_dataloader.dataset gives data_root, '
                   'ann_file, img_dir, img_suffix')
    p.add_argument('--cams', required=True, help='folder of <name>.npz CAM files (tools/test.py)')
    p.add_argument('--out', required=True, help='output folder for <name>.png')
    p.add_argument('--method', required=True, choices=sorted(LABEL_METHODS))
    p.add_argument('--split', help='split name (ImageSets/Segmentation/NAME.txt) or a list file; '
                   'default: the config\'s ann_file')
    p.add_argument('--data-root', help='override the config\'s data_root')
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
                   'purity, see s2c.cam.pseudo_labels) is below P as 255')
    p.add_argument('--se-dir',
                   help='SE map folder (se_merge; default: the SE-map cache of the config)')
    p.add_argument('--cls-labels',
                   help="PSA-style cls_labels.npy: a CAM class the image lacks is a failure "
                        "(default: the config dataset's cls_labels.npy when it exists)")
    p.add_argument('--num-classes', type=int, default=20, help='foreground classes (VOC 20)')
    p.add_argument('--workers', type=int, default=None,
                   help='processes (default: 4 on CPU; 1 for sam, whose decoder is per process)')
    sam = p.add_argument_group('sam method (CPM at inference; settings from model.cpm)')
    sam.add_argument('--backend', help='prompt back-end type (default: the config\'s)')
    sam.add_argument('--selection', help='mask selection policy, e.g. index2, best_iou, single')
    sam.add_argument('--confidence', choices=['logit_x_meancam', 'stability_x_meancam'])
    sam.add_argument('--embedding-dir', help='SAM embedding cache (default: from the config)')
    sam.add_argument('--device', default='auto', help='device of the SAM decoder')
    p.add_argument('--overwrite', action='store_true', help='rewrite existing outputs')
    return p.parse_args(argv)


def sam_options(cfg: Config, args: argparse.Namespace) -> dict:
    """``extra`` of the sam method: the config's CPM block with the CLI overrides."""
    from s2c.apis.config import resolve_sam_settings, set_data_root
    if args.data_root:
        set_data_root(cfg, args.data_root)
    if not cfg.get('model', {}).get('cpm'):
        raise ValueError(f'{args.config} has no model.cpm block: use an S2C config '
                         '(e.g. configs/s2c_voc.py) for --method sam')
    resolve_sam_settings(cfg)
    cpm = cfg.model.cpm.to_dict()
    if args.backend:
        cpm['backend']['type'] = args.backend
    for key in ('selection', 'confidence', 'embedding_dir'):
        if getattr(args, key):
            cpm[key] = getattr(args, key)
    return dict(cpm=cpm, num_classes=args.num_classes, device=args.device)


def default_se_dir(cfg: Config, args: argparse.Namespace) -> str | None:
    """``--se-dir``, else the SE-map cache of the config (``se_maps`` block), else None."""
    if args.se_dir or cfg.get('se_maps') is None:
        return args.se_dir
    from s2c.apis.config import set_data_root
    from s2c.sam.cache_layout import se_map_cache_dir
    if args.data_root:
        set_data_root(cfg, args.data_root)
    data_root = cfg.get('train_dataloader', {}).get('dataset', {}).get('data_root', '')
    return se_map_cache_dir(data_root, cfg.se_maps, cfg.get('sam'))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = Config.fromfile(args.config)
        paths = dataset_paths(cfg.get('train_dataloader', {}).get('dataset', {}),
                              split=args.split, data_root=args.data_root, img_dir=args.img_dir)
        names = read_split(paths.split_file)
        bg = read_bg_threshold(args.bg_threshold_from) if args.bg_threshold_from else \
            args.bg_threshold
        crf = CRFParams(alpha=args.alpha, iterations=args.crf_iterations)
        extra, workers, se_dir = None, args.workers, None
        if args.method == 'sam':
            extra = sam_options(cfg, args)
            workers = 1 if workers is None else workers
        elif workers is None:
            workers = min(4, os.cpu_count() or 1)
        if args.method == 'se_merge':
            se_dir = default_se_dir(cfg, args)
        summary = make_pseudo_labels(
            args.cams, args.out, names, args.method, img_dir=paths.img_dir,
            img_suffix=paths.img_suffix, se_dir=se_dir, num_classes=args.num_classes,
            bg_threshold=bg, crf_params=crf, ignore_below=args.ignore_below,
            workers=workers, overwrite=args.overwrite,
            cls_labels=args.cls_labels or paths.cls_labels, extra=extra)
    except (ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(summary.format())
    return 0 if summary.ok else 1


if __name__ == '__main__':
    sys.exit(main())
