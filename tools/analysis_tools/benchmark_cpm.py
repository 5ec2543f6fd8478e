"""Cost of the S2C losses per training iteration (a script, not a test).

Seconds per training iteration (forward + backward + optimizer step) and peak
memory of the S2C CAM classifier (:class:`s2c.models.CAMClassifier`, ResNet-38)
on synthetic batches, for four settings:

``classifier``  ``loss_cls`` only (the CAM baseline);
``ssc``         ``loss_cls + loss_ssc``;
``cpm_cached``  ``loss_cls + loss_ssc + loss_cpm``, SAM embeddings of the original
                images read from an embedding cache (the s2c default);
``cpm_online``  the same, the crops encoded by SAM's ViT every step (official S2C).

Inputs (per iteration, seeded): ``B`` random normalised crops ``(B, 3, S, S)``,
multi-hot labels with 1-3 of 20 classes, blocky random SE maps (a 10 x 10 grid of
20-60 ids upsampled with nearest neighbour, ~5 % uncovered cells, renumbered as
``PackClsInputs`` does) and a :class:`~s2c.structures.Geometry` record
mapping each crop into a 375 x 500 original image (random long-side rescale to
256-512, random flip, random crop/pad as in the S2C VOC config). For
``cpm_cached`` a temporary embedding cache with one random ``(256, 64, 64)`` record
per image name and the manifest of :func:`s2c.caches.run_embedding_job` is
written first (:func:`s2c.caches.write_synthetic_embedding_cache`). SAM has random
weights (``checkpoint=None``): mask quality is meaningless, the cost of every step is
the real one. CPM is active from the first
iteration (``start_epoch=0``).

Each setting runs in a fresh subprocess (this script with ``--setting NAME``) so
that memory peaks do not mix. Time: only the steady state after ``--warmup``
iterations, mean and standard deviation over ``--iters`` iterations (the batch
is built before the clock starts; CUDA is synchronised). Memory: on CPU the RSS
high-water mark sampled with psutil every 10 ms during the timed iterations and the
process's ``ru_maxrss`` (which includes the set-up: building SAM); on CUDA
``torch.cuda.max_memory_allocated`` (whole process, and during the timed steps).
For the CPM settings the time is broken down into the multi-scale CAMs (4
no-grad forwards), peak finding, SAM encoding (online) or cache reading (cached),
SAM decoding, the rest of CPM (grid sample, label composition) and the
training forward/backward/step.

Example (CPU, real ResNet-38, SAM vit_b)::

    python tools/analysis_tools/benchmark_cpm.py --iters 3 --warmup 1
    python tools/analysis_tools/benchmark_cpm.py --width 0.25 --json cpm_bench.json

``cpm_online`` encodes the crops ``encode_batch_size`` at a time (the back-end's
default, 2; segment-anything's global attention holds ``(B x heads, 4096, 4096)``
float32 maps, ~20 GB for 8 vit_b crops at once); ``--online-encode-chunk N`` sets it.

Targets: ``cpm_cached`` >= 10x faster per iteration than ``cpm_online``;
``ssc`` adds <= 20 % to the ``classifier`` step.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger

import s2c.models  # noqa: F401  (registers the models)
from s2c.caches import write_synthetic_embedding_cache
from s2c.registry import MODELS
from s2c.structures import Geometry
from s2c.utils import resolve_device
from s2c.utils.profiling import PeakRSS
from s2c.utils.segments import renumber_segments

SETTINGS = ('classifier', 'ssc', 'cpm_cached', 'cpm_online')
DESCRIPTIONS = {
    'classifier': 'classifier (loss_cls)',
    'ssc': '+ SSC',
    'cpm_cached': '+ SSC + CPM cached',
    'cpm_online': '+ SSC + CPM online (official)',
}
NUM_CLASSES = 20
ORI_SHAPE = (375, 500)  # (H, W) of every synthetic original image
BREAKDOWN_KEYS = ('cams', 'peaks', 'encode', 'cache_read', 'decode', 'cpm_rest', 'train_step')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='auto', help="'auto' (CUDA when available), 'cpu', 'cuda'")
    p.add_argument('--width', type=float, default=1.0,
                   help='ResNet-38 channel multiplier (1.0 = the real network)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--crop', type=int, default=256, help='crop side, pixels')
    p.add_argument('--model-type', default='vit_b', help='SAM model (random weights)')
    p.add_argument('--iters', type=int, default=3, help='timed iterations per setting')
    p.add_argument('--warmup', type=int, default=1, help='untimed iterations first')
    p.add_argument('--lr', type=float, default=1e-3,
                   help='SGD learning rate (does not change the cost; small keeps random '
                        'weights finite)')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    p.add_argument('--online-encode-chunk', type=int, default=0,
                   help='cpm_online: encode the crops N at a time (the back-end\'s '
                        'encode_batch_size; 0 = its default, 2)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--settings', default=','.join(SETTINGS), help=f'subset of {SETTINGS}')
    p.add_argument('--json', default=None, help='also write all results to this file')
    # internal: run one setting in this process
    p.add_argument('--setting', default=None, choices=SETTINGS, help=argparse.SUPPRESS)
    p.add_argument('--result-file', default=None, help=argparse.SUPPRESS)
    p.add_argument('--cache-dir', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs
def random_se_map(rng: np.random.Generator, size: int, valid: np.ndarray) -> np.ndarray:
    """Blocky ``(size, size)`` int64 SE map with ids ``0..K`` (renumbered), 0 on padding."""
    num_ids = int(rng.integers(20, 61))
    grid = rng.integers(1, num_ids + 1, size=(10, 10))
    grid[rng.random((10, 10)) < 0.05] = 0
    up = F.interpolate(torch.from_numpy(grid).float()[None, None], size=(size, size),
                       mode='nearest')[0, 0].long().numpy()
    up[~valid] = 0
    return renumber_segments(up)


def random_geometry(rng: np.random.Generator, crop: int):
    """Geometry of a ``crop`` x ``crop`` crop of a rescaled, maybe flipped 375x500 image."""
    h0, w0 = ORI_SHAPE
    long_side = int(rng.integers(256, 513))
    scale = long_side / max(h0, w0)
    h, w = round(h0 * scale), round(w0 * scale)
    geo = Geometry.identity(h0, w0).rescale(h, w)
    if rng.random() < 0.5:
        geo = geo.hflip()

    def offset(size: int) -> int:  # as RandomCrop: negative = padding before
        space = size - crop
        return int(rng.integers(space + 1)) if space >= 0 else -int(rng.integers(-space + 1))

    return geo.crop(offset(h), offset(w), crop, crop)


def make_batch(rng: np.random.Generator, names: list[str], crop: int
               ) -> tuple[torch.Tensor, list[dict]]:
    """Synthetic ``inputs`` ``(B, 3, crop, crop)`` and ``PackClsInputs``-style data samples."""
    inputs = torch.from_numpy(rng.standard_normal((len(names), 3, crop, crop),
                                                  dtype=np.float32))
    samples = []
    for i, name in enumerate(names):
        geo = random_geometry(rng, crop)
        valid = geo.valid_mask()
        inputs[i][:, ~torch.from_numpy(valid)] = 0.0  # padding = mean colour
        label = torch.zeros(NUM_CLASSES)
        label[rng.choice(NUM_CLASSES, size=int(rng.integers(1, 4)), replace=False)] = 1.0
        samples.append(dict(name=name, img_path=f'{name}.jpg', gt_label=label,
                            ori_shape=ORI_SHAPE, img_shape=(crop, crop), geometry=geo,
                            valid=torch.from_numpy(valid),
                            se_map=torch.from_numpy(random_se_map(rng, crop, valid))))
    return inputs, samples


# --------------------------------------------------------------------------- timing
class Timers:
    """Accumulated wall time of wrapped callables (CUDA synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == 'cuda'
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.enabled = False

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def wrap(self, obj: object, attr: str, key: str) -> None:
        """Replace ``obj.attr`` (a bound method) by a timed version."""
        fn: Callable = getattr(obj, attr)

        def timed(*args, **kwargs):
            if not self.enabled:
                return fn(*args, **kwargs)
            self.sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.total[key] += time.perf_counter() - t0
                self.count[key] += 1

        object.__setattr__(obj, attr, timed)


def build_model(setting: str, args: argparse.Namespace, cache_dir: str | None) -> torch.nn.Module:
    """The CAM classifier with the losses of ``setting``."""
    # keep init_weights' per-parameter report out of the output
    MMLogger.get_instance('benchmark_cpm', log_level='WARNING')

    cfg = dict(type='CAMClassifier', backbone=dict(type='ResNet38d', width=args.width),
               num_classes=NUM_CLASSES, feat_dim=256)
    if setting != 'classifier':
        cfg['ssc'] = dict(type='SSCLoss', temperature=1.0, loss_weight=1.0, negatives='segments')
    if setting.startswith('cpm'):
        # seed 0: the random weights the synthetic cache's encoder_id names
        cfg['cpm'] = dict(type='CPM', backend=dict(type='sam', model_type=args.model_type,
                                                   checkpoint=None, seed=0),
                          embedding_source=setting.split('_')[1], embedding_dir=cache_dir,
                          start_epoch=0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def run_setting(args: argparse.Namespace) -> dict:
    """Time one setting in this process; returns the result dict."""
    setting = args.setting
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(resolve_device(args.device))
    names = [f'bench_{i:03d}' for i in range(args.batch_size)]
    tmp = None
    cache_dir = args.cache_dir
    if setting == 'cpm_cached' and cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix='s2c-bench-cpm-')
        cache_dir = tmp.name
        write_synthetic_embedding_cache(cache_dir, names, args.model_type, ORI_SHAPE,
                                        args.seed, 'tools/analysis_tools/benchmark_cpm.py')

    t_setup = time.perf_counter()
    model = build_model(setting, args, cache_dir).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.0005, weight_decay=0.0005)
    timers = Timers(device)
    cpm = model.cpm
    if cpm is not None:
        backend = cpm.backend(device)  # on the device now (not inside the first iteration)
        timers.wrap(cpm, 'make_targets', 'make_targets')
        timers.wrap(cpm, 'refine', 'refine')
        timers.wrap(cpm, 'prompt_peaks', 'peaks')
        timers.wrap(backend, 'decode', 'decode')
        if cpm.embedding_source == 'online':
            if args.online_encode_chunk > 0:
                backend.encode_batch_size = args.online_encode_chunk
            timers.wrap(backend, 'encode', 'encode')
        else:
            timers.wrap(cpm.store, 'get_batch', 'cache_read')
    if model.ssc is not None:
        timers.wrap(model.ssc, 'forward', 'ssc_forward')
    setup_s = time.perf_counter() - t_setup
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_setup = psutil.Process().memory_info().rss
    log(f'[{setting}] device {device}, ResNet-38 width {args.width}, batch {args.batch_size} x '
        f'{args.crop}^2, SAM {args.model_type}, set-up {setup_s:.1f} s, '
        f'RSS {rss_setup / 2**30:.2f} GiB')

    rng = np.random.default_rng(args.seed)
    times: list[float] = []
    losses_seen: dict[str, list[float]] = defaultdict(list)
    num_prompts: list[int] = []
    total_iters = args.warmup + args.iters
    with PeakRSS() as rss:
        for it in range(total_iters):
            timed = it >= args.warmup
            if timed and it == args.warmup and device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            if timed and it == args.warmup:
                rss.peak = rss.rss()  # steady state only
            inputs, samples = make_batch(rng, names, args.crop)
            inputs = inputs.to(device)
            labels = torch.stack([s['gt_label'] for s in samples])
            num_prompts.append(int((labels > 0.5).sum()))
            timers.enabled = timed
            timers.sync()
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            losses = model(inputs, samples, mode='loss')
            loss = sum(losses.values())
            loss.backward()
            optimizer.step()
            timers.sync()
            dt = time.perf_counter() - t0
            timers.enabled = False
            if timed:
                times.append(dt)
            values = {k: float(v.detach()) for k, v in losses.items()}
            for k, v in values.items():
                losses_seen[k].append(v)
            log(f'[{setting}] iter {it + 1}/{total_iters} {"" if timed else "(warm-up) "}'
                f'{dt:.2f} s  ' + '  '.join(f'{k} {v:.4f}' for k, v in values.items()))
    result = dict(setting=setting, device=str(device), width=args.width,
                  online_encode_chunk=args.online_encode_chunk if setting == 'cpm_online' else 0,
                  batch_size=args.batch_size, crop=args.crop, model_type=args.model_type,
                  torch_threads=torch.get_num_threads(), iters=args.iters, warmup=args.warmup,
                  times=times, mean=float(np.mean(times)) if times else float('nan'),
                  std=float(np.std(times)) if times else float('nan'), setup_s=setup_s,
                  losses={k: v for k, v in losses_seen.items()},
                  losses_finite=all(np.isfinite(v).all() for v in losses_seen.values()),
                  prompts_per_iter=float(np.mean(num_prompts)) if num_prompts else 0.0)
    n = max(len(times), 1)
    per_iter = {k: v / n for k, v in timers.total.items()}
    if cpm is not None:
        sam_part = sum(per_iter.get(k, 0.0) for k in ('peaks', 'encode', 'cache_read', 'decode'))
        result['breakdown'] = dict(
            cams=per_iter.get('make_targets', 0.0) - per_iter.get('refine', 0.0),
            peaks=per_iter.get('peaks', 0.0), encode=per_iter.get('encode', 0.0),
            cache_read=per_iter.get('cache_read', 0.0), decode=per_iter.get('decode', 0.0),
            cpm_rest=per_iter.get('refine', 0.0) - sam_part,
            train_step=result['mean'] - per_iter.get('make_targets', 0.0))
    if 'ssc_forward' in per_iter:
        result['ssc_forward'] = per_iter['ssc_forward']
    if device.type == 'cuda':
        result['peak_mem_bytes'] = int(torch.cuda.max_memory_allocated())
        result['peak_mem_kind'] = 'torch.cuda.max_memory_allocated (timed steps)'
    else:
        result['peak_mem_bytes'] = int(rss.peak)
        result['peak_mem_kind'] = 'RSS high-water mark (psutil, timed steps)'
    # Linux: ru_maxrss in KiB; whole process including set-up (building SAM)
    result['process_maxrss_bytes'] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    result['rss_after_setup_bytes'] = int(rss_setup)
    if tmp is not None:
        tmp.cleanup()
    return result


# --------------------------------------------------------------------------- driver
def child_argv(args: argparse.Namespace, setting: str, result_file: str,
               cache_dir: str | None) -> list[str]:
    argv = [sys.executable, osp.abspath(__file__), '--setting', setting,
            '--result-file', result_file, '--device', args.device, '--width', str(args.width),
            '--batch-size', str(args.batch_size), '--crop', str(args.crop),
            '--model-type', args.model_type, '--iters', str(args.iters),
            '--warmup', str(args.warmup), '--lr', str(args.lr), '--threads', str(args.threads),
            '--seed', str(args.seed), '--online-encode-chunk', str(args.online_encode_chunk)]
    if cache_dir is not None:
        argv += ['--cache-dir', cache_dir]
    return argv


def fmt_mem(nbytes: float) -> str:
    return f'{nbytes / 2**30:.2f} GiB'


def format_report(results: dict[str, dict]) -> str:
    """Markdown tables and the two target checks."""
    base = results.get('classifier')
    first = next(iter(results.values()))
    lines = [f'device {first["device"]}, torch threads {first["torch_threads"]}, ResNet-38 width '
             f'{first["width"]}, batch {first["batch_size"]} x {first["crop"]}^2, SAM '
             f'{first["model_type"]} (random weights), {first["iters"]} timed iterations after '
             f'{first["warmup"]} warm-up', '',
             '| setting | s/iter (mean ± std) | vs classifier | peak memory (timed steps) '
             '| process peak RSS |',
             '|---|---|---|---|---|']
    for name, r in results.items():
        rel = f'{r["mean"] / base["mean"]:.2f}x' if base else 'n/a'
        proc = fmt_mem(r['process_maxrss_bytes'])
        lines.append(f'| {DESCRIPTIONS[name]} | {r["mean"]:.2f} ± {r["std"]:.2f} | {rel} | '
                     f'{fmt_mem(r["peak_mem_bytes"])} | {proc} |')
    chunk = results.get('cpm_online', {}).get('online_encode_chunk', 0)
    if chunk:
        lines.append(f'(cpm_online: crops encoded {chunk} at a time)')
    cpm = {k: v for k, v in results.items() if 'breakdown' in v}
    if cpm:
        lines += ['', 'CPM breakdown, s/iter (cams = 4-scale no-grad CAM forwards; train step = '
                  'forward + backward + step incl. SSC and loss_cpm):', '',
                  '| setting | ' + ' | '.join(BREAKDOWN_KEYS) + ' | prompts/iter |',
                  '|---|' + '---|' * (len(BREAKDOWN_KEYS) + 1)]
        for name, r in cpm.items():
            b = r['breakdown']
            lines.append(f'| {DESCRIPTIONS[name]} | ' + ' | '.join(
                f'{b[k]:.3f}' for k in BREAKDOWN_KEYS) + f' | {r["prompts_per_iter"]:.1f} |')
    lines.append('')
    if 'cpm_cached' in results and 'cpm_online' in results:
        ratio = results['cpm_online']['mean'] / results['cpm_cached']['mean']
        lines.append(f'Target CPM cached >= 10x faster than CPM online: '
                     f'{"PASS" if ratio >= 10 else "FAIL"} (online / cached = {ratio:.2f}x)')
        bo, bc = results['cpm_online']['breakdown'], results['cpm_cached']['breakdown']
        sam_o = bo['encode'] + bo['decode'] + bo['peaks'] + bo['cpm_rest']
        sam_c = bc['cache_read'] + bc['decode'] + bc['peaks'] + bc['cpm_rest']
        lines.append(f'  SAM part of CPM only (peaks + encode/cache read + decode + rest): '
                     f'online {sam_o:.3f} s, cached {sam_c:.3f} s '
                     f'-> {sam_o / max(sam_c, 1e-9):.1f}x')
        if 'ssc' in results:
            over_o = results['cpm_online']['mean'] - results['ssc']['mean']
            over_c = results['cpm_cached']['mean'] - results['ssc']['mean']
            lines.append(f'  CPM overhead over + SSC: online {over_o:.2f} s, cached {over_c:.2f} s'
                         f' -> {over_o / over_c:.1f}x' if over_c > 0 else
                         f'  CPM overhead over + SSC: online {over_o:.2f} s, cached {over_c:.2f} s')
    if base and 'ssc' in results:
        add = results['ssc']['mean'] / base['mean'] - 1.0
        lines.append(f'Target SSC adds <= 20 % to the classifier step: '
                     f'{"PASS" if add <= 0.20 else "FAIL"} ({add * 100:+.1f} %)')
    bad = [k for k, r in results.items() if not r['losses_finite']]
    if bad:
        lines.append(f'WARNING: non-finite losses in {bad} (timings may not be representative)')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setting is not None:  # child: one setting
        result = run_setting(args)
        text = json.dumps(result)
        if args.result_file:
            with open(args.result_file, 'w') as f:
                f.write(text)
        else:
            print(text)
        return 0
    settings = [s.strip() for s in args.settings.split(',') if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(f'unknown settings {unknown}; choose from {list(SETTINGS)}')
    names = [f'bench_{i:03d}' for i in range(args.batch_size)]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix='s2c-bench-cpm-') as tmp:
        cache_dir = None
        if 'cpm_cached' in settings:
            cache_dir = osp.join(tmp, 'embeddings')
            write_synthetic_embedding_cache(cache_dir, names, args.model_type, ORI_SHAPE,
                                            args.seed, 'tools/analysis_tools/benchmark_cpm.py')
            log(f'wrote a temporary {args.model_type} embedding cache of {len(names)} random '
                f'records to {cache_dir}')
        for i, setting in enumerate(settings):
            log(f'=== setting {i + 1}/{len(settings)}: {setting} ({DESCRIPTIONS[setting]}) ===')
            result_file = osp.join(tmp, f'{setting}.json')
            t0 = time.perf_counter()
            proc = subprocess.run(child_argv(args, setting, result_file, cache_dir),
                                  env=dict(os.environ))
            if proc.returncode != 0 or not osp.isfile(result_file):
                raise SystemExit(f'setting {setting} failed (exit code {proc.returncode}); '
                                 f'rerun it alone with --setting {setting} to see the error')
            with open(result_file) as f:
                results[setting] = json.load(f)
            log(f'=== {setting}: {results[setting]["mean"]:.2f} s/iter '
                f'({time.perf_counter() - t0:.0f} s with set-up) ===')
    report = format_report(results)
    print(report)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(results=results, report=report), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
