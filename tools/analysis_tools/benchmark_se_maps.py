"""SE maps: our segment-everything provider vs segment-anything's generator (a script, not a test).

For each image and each threshold setting, both SE providers run end to end
on the same model (``sam_amg`` = :class:`s2c.sam.amg.SamAMG`,
``sam_amg_reference`` = ``SamAutomaticMaskGenerator``; image encoder,
decoder, post-processing and SE map composition included) and the script
reports seconds per image, peak extra memory during the call (psutil RSS
sampled every 5 ms above the RSS before the call; on CUDA
``torch.cuda.max_memory_allocated``), pixel agreement and segment counts of
the two SE maps, and bytes on disk of the uint16 PNG vs the official int64
``.npy``. Settings: ``default`` (SamAutomaticMaskGenerator defaults) and
``zero`` (``pred_iou_thresh=0``, ``stability_score_thresh=0``: with random
weights almost no mask passes the defaults, so ``zero`` exercises the
post-processing). The two providers alternate which runs first per image.

``--exact-decoder`` times ours with the library's decoder call order
(``fast_decoder=False``: bit-identical masks) instead of the decoder that shares
the image-side work across a point batch.

Example (vit_b with random weights, CPU, 3 images)::

    python tools/analysis_tools/benchmark_se_maps.py --images data/VOCdevkit/VOC2012/JPEGImages \
        --num-images 3 --json se_bench.json

Targets: identical maps (>= 99.9 % pixel agreement, same segment
count), >= 2x faster per image at default parameters, PNG >= 20x smaller
than int64 ``.npy``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from s2c.registry import SE_PROVIDERS
from s2c.sam.build import build_sam
from s2c.utils.profiling import PeakRSS
from s2c.utils.se_map_io import save_se_map

SETTINGS = {
    'default': {},
    'zero': dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
}
METHODS = ('sam_amg', 'sam_amg_reference')


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', required=True,
                   help='folder of .jpg/.png images (e.g. <data_root>/JPEGImages)')
    p.add_argument('--num-images', type=int, default=None, help='first N images (sorted)')
    p.add_argument('--model-type', default='vit_b')
    p.add_argument('--checkpoint', default=None, help='SAM checkpoint (default: random weights)')
    p.add_argument('--device', default='auto')
    p.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    p.add_argument('--settings', default='default,zero', help=f'subset of {list(SETTINGS)}')
    p.add_argument('--overlap', default='smallest_on_top')
    p.add_argument('--exact-decoder', action='store_true',
                   help="ours with the library's decoder order (se_maps.provider.fast_decoder"
                        '=False) instead of the shared image-side decoder')
    p.add_argument('--json', default=None, help='also write per-image results here')
    return p.parse_args()


def timed(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
          device: torch.device) -> tuple[np.ndarray, float, int]:
    """Run ``fn(image)``; return (SE map, seconds, peak extra memory in bytes)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with PeakRSS(0.005) as mem:
        t0 = time.perf_counter()
        se = fn(image)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) - base) if device.type == 'cuda' \
        else mem.extra
    return se, seconds, peak


def disk_sizes(se: np.ndarray, tmp: str) -> tuple[int, int]:
    """Bytes of the SE map as uint16 PNG and as int64 ``.npy`` (the official format)."""
    png, npy = osp.join(tmp, 'se.png'), osp.join(tmp, 'se.npy')
    save_se_map(png, se)
    np.save(npy, se.astype(np.int64))
    return osp.getsize(png), osp.getsize(npy)


def summarise(rows: list[dict], setting: str) -> str:
    r = [x for x in rows if x['setting'] == setting]
    t_ours = np.mean([x['sam_amg']['seconds'] for x in r])
    t_ref = np.mean([x['sam_amg_reference']['seconds'] for x in r])
    m_ours = max(x['sam_amg']['peak_mem'] for x in r) / 2**20
    m_ref = max(x['sam_amg_reference']['peak_mem'] for x in r) / 2**20
    agree = [x['pixel_agreement'] for x in r]
    agree_txt = f'{100 * min(agree):.3f} % / {100 * np.mean(agree):.3f} %'
    k_ours = sum(x['sam_amg']['segments'] for x in r)
    k_ref = sum(x['sam_amg_reference']['segments'] for x in r)
    same_k = sum(x['sam_amg']['segments'] == x['sam_amg_reference']['segments'] for x in r)
    png = np.mean([x['png_bytes'] for x in r])
    npy = np.mean([x['npy_bytes'] for x in r])
    return (f'| {setting} | {len(r)} | {t_ours:.1f} | {t_ref:.1f} | {t_ref / t_ours:.2f}x '
            f'| {m_ours:.0f} | {m_ref:.0f} | {agree_txt} '
            f'| {k_ours} / {k_ref} ({same_k}/{len(r)} equal) | {png / 1024:.1f} KiB '
            f'| {npy / 1024:.0f} KiB | {npy / png:.0f}x |')


def main() -> None:
    args = parse_args()
    names = sorted(f for f in os.listdir(args.images) if f.lower().endswith(('.jpg', '.png')))
    names = names[:args.num_images] if args.num_images else names
    settings = [s.strip() for s in args.settings.split(',') if s.strip()]
    torch.manual_seed(args.seed)
    model = build_sam(args.model_type, args.checkpoint, device=args.device)
    device = model.pixel_mean.device
    fast = {'sam_amg': dict(fast_decoder=not args.exact_decoder), 'sam_amg_reference': {}}
    providers = {s: {m: SE_PROVIDERS.build(dict(type=m, sam=model, overlap=args.overlap,
                                                 **SETTINGS[s], **fast[m])) for m in METHODS}
                 for s in settings}
    # Warm-up (allocator, BLAS threads) on a small image with few points.
    for m in METHODS:
        SE_PROVIDERS.build(dict(type=m, sam=model, points_per_side=2))(
            np.zeros((64, 64, 3), np.uint8))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(n, s) for n in names for s in settings]
        for i, (name, setting) in enumerate(tqdm(jobs, desc='SE map benchmark')):
            image = np.array(Image.open(osp.join(args.images, name)).convert('RGB'))
            order = METHODS if i % 2 == 0 else METHODS[::-1]
            row = dict(image=name, setting=setting, size=list(image.shape[:2]))
            maps = {}
            for m in order:
                se, seconds, peak = timed(providers[setting][m], image, device)
                maps[m] = se
                row[m] = dict(seconds=seconds, peak_mem=peak, segments=int(se.max()))
            row['pixel_agreement'] = float(np.mean(maps['sam_amg'] == maps['sam_amg_reference']))
            row['png_bytes'], row['npy_bytes'] = disk_sizes(maps['sam_amg'], tmp)
            rows.append(row)
            tqdm.write(f"{name} {setting}: ours {row['sam_amg']['seconds']:.1f} s, "
                       f"reference {row['sam_amg_reference']['seconds']:.1f} s, "
                       f"agreement {100 * row['pixel_agreement']:.3f} %, segments "
                       f"{row['sam_amg']['segments']}/{row['sam_amg_reference']['segments']}")

    weights = f'random weights, seed {args.seed}' if args.checkpoint is None else args.checkpoint
    print(f'\nSE maps, {args.model_type} ({weights})'
          f', device {device}, torch threads {torch.get_num_threads()}, {len(names)} images '
          f'({", ".join(names)}), overlap {args.overlap}, '
          f'{"exact" if args.exact_decoder else "fast"} decoder\n')
    print('| thresholds | images | ours s/img | library s/img | speed-up | ours peak MiB '
          '| library peak MiB | pixel agreement min / mean | segments ours / library '
          '| uint16 PNG / img | int64 .npy / img | smaller |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for s in settings:
        print(summarise(rows, s))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
