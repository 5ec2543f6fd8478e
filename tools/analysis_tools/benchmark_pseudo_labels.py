"""Throughput and peak memory of the pseudo-label methods (a script, not a test).

Builds a synthetic dataset of ``--num-images`` 500x375 images (smooth random shapes), CAMs
of two classes per image (float16 ``.npz``, as ``tools/test.py`` writes them) and SE maps of
about 100 segments (uint16 PNG), then runs the real job
(:func:`s2c.pseudo_labels.make_pseudo_labels`,
file reading and PNG writing included) once per method, each in a fresh process, and
reports images/s and the peak resident memory (psutil RSS of that process and its workers,
sampled every 10 ms; "RSS before" is the process after importing s2c, mostly torch, which
``s2c.evaluation`` imports). The data are synthetic, so the numbers measure cost, not
quality. ``sam`` (SAM refinement) reads vit_b-shaped embeddings from a cache of random
values written before timing starts, as the real method reads the cache of
``tools/cache_sam_embeddings.py``.

Example::

    python tools/analysis_tools/benchmark_pseudo_labels.py --num-images 20 --workers 1

Another method is benchmarked by adding one function to ``METHOD_SETUPS``: it receives the
:class:`BenchData` and returns the keyword arguments of ``make_pseudo_labels`` for it.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import os.path as osp
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from s2c.caches import write_synthetic_embedding_cache
from s2c.cam import CRFParams, save_cams
from s2c.pseudo_labels import make_pseudo_labels
from s2c.utils.profiling import PeakRSS


@dataclass(frozen=True)
class BenchData:
    """Locations of the synthetic dataset.

    Attributes:
        root: Temporary folder holding everything.
        img_dir: ``<name>.jpg`` RGB images, ``height x width``.
        cam_dir: ``<name>.npz`` CAMs (2 classes, float16).
        se_dir: ``<name>.png`` uint16 SE maps (0 = no segment).
        names: Image names.
        height: Image height (pixels).
        width: Image width (pixels).
    """

    root: str
    img_dir: str
    cam_dir: str
    se_dir: str
    names: list[str]
    height: int
    width: int


def make_data(root: str, num_images: int, width: int = 500, height: int = 375,
              seed: int = 0) -> BenchData:
    """Write the synthetic images, CAMs and SE maps (see the module docstring)."""
    rng = np.random.default_rng(seed)
    data = BenchData(root=root, img_dir=osp.join(root, 'img'), cam_dir=osp.join(root, 'cams'),
                     se_dir=osp.join(root, 'se'), names=[f'bench_{i:04d}'
                                                         for i in range(num_images)],
                     height=height, width=width)
    for d in (data.img_dir, data.cam_dir, data.se_dir):
        os.makedirs(d, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    for name in tqdm(data.names, desc='synthetic data', unit='img'):
        img = np.empty((height, width, 3), np.float32)
        img[:] = rng.uniform(0, 255, 3)
        cams = []
        for _ in range(2):                                   # two objects = two classes
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            ry, rx = rng.uniform(0.1, 0.3) * height, rng.uniform(0.1, 0.3) * width
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            img[inside] = rng.uniform(0, 255, 3)
            cam = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), sigmaX=15)
            cams.append(cam / max(cam.max(), 1e-6))
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(osp.join(data.img_dir, name + '.jpg'), quality=90)
        keys = np.sort(rng.choice(20, 2, replace=False))
        save_cams(osp.join(data.cam_dir, name + '.npz'), keys, np.stack(cams))
        # ~100 segments: nearest of 100 random seeds on a coarse grid, 10 % uncovered.
        seeds = rng.uniform(0, 1, (100, 2)) * (height / 8, width / 8)
        gy, gx = np.mgrid[0:height // 8 + 1, 0:width // 8 + 1]
        dist = (gy[..., None] - seeds[:, 0]) ** 2 + (gx[..., None] - seeds[:, 1]) ** 2
        coarse = (dist.argmin(-1) + 1).astype(np.uint16)
        coarse[rng.random(coarse.shape) < 0.1] = 0
        se = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(osp.join(data.se_dir, name + '.png'), se)
    return data


def _setup_threshold(data: BenchData) -> dict:
    return dict(bg_threshold=0.25, img_dir=data.img_dir)


def _setup_crf(data: BenchData) -> dict:
    return dict(img_dir=data.img_dir, crf=CRFParams())


def _setup_se_merge(data: BenchData) -> dict:
    return dict(bg_threshold=0.25, img_dir=data.img_dir, se_dir=data.se_dir)


def _setup_sam(data: BenchData) -> dict:
    """SAM refinement with vit_b's prompt encoder + mask decoder on cached embeddings.

    The embeddings are random (written once per run, not timed): decoding costs
    the same whatever their values; the image encoder never runs in this method.
    """
    emb_dir = osp.join(data.root, 'sam_embeddings_vit_b')
    if not osp.isdir(emb_dir):
        write_synthetic_embedding_cache(emb_dir, data.names, 'vit_b', (data.height, data.width),
                                        source='benchmark_pseudo_labels.py')
    cpm = dict(backend=dict(type='sam', model_type='vit_b', checkpoint=None),
               embedding_dir=emb_dir)
    return dict(img_dir=data.img_dir, cpm=cpm, device='auto')


#: method name -> function(BenchData) -> make_pseudo_labels keyword arguments.
METHOD_SETUPS: dict[str, Callable[[BenchData], dict]] = {
    'threshold': _setup_threshold,
    'crf': _setup_crf,
    'se_merge': _setup_se_merge,
    'sam': _setup_sam,
}


def _run_method(method: str, data: BenchData, workers: int, queue: mp.Queue) -> None:
    """Child process: run the job for one method, report time and peak RSS."""
    kwargs = METHOD_SETUPS[method](data)
    out = osp.join(data.root, f'out_{method}')
    with PeakRSS(include_children=True) as mem:
        t0 = time.perf_counter()
        summary = make_pseudo_labels(data.cam_dir, out, data.names, method, workers=workers,
                                     overwrite=True, progress=False, **kwargs)
        wall = time.perf_counter() - t0
    queue.put(dict(method=method, images=len(summary.done), failed=summary.failures.count,
                   wall_s=wall, images_per_s=len(summary.done) / wall,
                   peak_rss_mb=mem.peak / 2**20, base_rss_mb=mem.base / 2**20))


def benchmark(methods: list[str], num_images: int, workers: int = 1, width: int = 500,
              height: int = 375, keep: str | None = None) -> list[dict]:
    """Run every method on the same synthetic data; one fresh process per method."""
    root = keep or tempfile.mkdtemp(prefix='s2c_bench_pl_')
    try:
        data = make_data(root, num_images, width, height)
        ctx = mp.get_context('spawn')
        rows = []
        for method in methods:
            queue = ctx.Queue()
            p = ctx.Process(target=_run_method, args=(method, data, workers, queue))
            p.start()
            rows.append(queue.get())
            p.join()
            print(f'{method}: {rows[-1]["images_per_s"]:.2f} images/s, '
                  f'peak RSS {rows[-1]["peak_rss_mb"]:.0f} MB', flush=True)
        return rows
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def format_table(rows: list[dict], workers: int, width: int, height: int) -> str:
    """Markdown table of the results."""
    lines = [f'Synthetic {width}x{height} images, 2 classes each, ~100 SE segments; '
             f'{workers} worker(s); {os.cpu_count()} CPU cores.', '',
             '| method | images | wall (s) | images/s | peak RSS (MB) | RSS before (MB) |',
             '|---|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f'| {r["method"]} | {r["images"]} | {r["wall_s"]:.2f} | '
                     f'{r["images_per_s"]:.2f} | {r["peak_rss_mb"]:.0f} | '
                     f'{r["base_rss_mb"]:.0f} |')
    return '\n'.join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--methods', nargs='+', default=list(METHOD_SETUPS), choices=METHOD_SETUPS)
    p.add_argument('--num-images', type=int, default=20)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--width', type=int, default=500)
    p.add_argument('--height', type=int, default=375)
    p.add_argument('--keep', help='write the data and outputs here and keep them')
    p.add_argument('--json', help='also write the rows as JSON')
    args = p.parse_args()
    rows = benchmark(args.methods, args.num_images, args.workers, args.width, args.height,
                     args.keep)
    print(format_table(rows, args.workers, args.width, args.height))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)


if __name__ == '__main__':
    main()
