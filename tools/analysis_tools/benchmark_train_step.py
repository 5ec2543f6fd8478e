"""Cost of one S2C training iteration, per loss, built from a training config.

The model, its optimizer wrapper and the training dataloader are built from
``CONFIG`` the way ``tools/train.py`` builds them
(:func:`s2c.apis.build_train_config`: ``Config.fromfile``, ``--cfg-options``,
``--data-root``, ``--amp``; then MMEngine's registries, ``build_optim_wrapper``
and ``Runner.build_dataloader``), and each iteration is MMEngine's
``model.train_step(batch, optim_wrapper)`` (data preprocessor, forward with every
loss, backward, optimizer step), as in the training loop. Four rows, each run in
a fresh subprocess of this script so that memory peaks do not mix:

``classifier``  ``loss_cls`` only: ``model.ssc`` and ``model.cpm`` removed, no SE maps
                loaded (the CAM baseline);
``ssc``         ``loss_cls + loss_ssc`` (``model.cpm`` removed);
``cpm_cached``  ``+ loss_cpm``, SAM embeddings of the original images read from the
                embedding cache (``model.cpm.embedding_source='cached'``);
``cpm_online``  ``+ loss_cpm``, the crops encoded by SAM's ViT every step
                (``embedding_source='online'``, the official S2C setting).

CPM is active from the first iteration (``model.cpm.start_epoch=0``).

Data: by default real batches from the config's train dataloader (its caches must
exist: ``--build-caches`` builds the missing entries with
:func:`s2c.caches.run_se_map_job` / :func:`s2c.caches.run_embedding_job`, the
functions behind ``tools/cache_se_maps.py`` / ``tools/cache_sam_embeddings.py``).
``--synthetic`` needs no dataset: random normalised crops of the config's batch
size and crop size, random multi-hot labels, blocky random SE maps and geometry
records of random rescale/flip/crop of a 375 x 500 image (as the train pipeline
makes them), and for ``cpm_cached`` a temporary embedding cache of random records
(:func:`s2c.caches.write_synthetic_embedding_cache`). SAM then has random weights
(``model.cpm.backend.checkpoint=None``) and a missing ``model.backbone.pretrained``
file means random init: mask quality is meaningless, every cost is the real one.

Timing: ``--iters`` iterations after ``--warmup``; mean and standard deviation of
the wall time per iteration (``next(dataloader)`` + ``train_step``; on CUDA
synchronised). The time is split by wrapping, from here, the functions that
``s2c/models/cpm/cpm.py`` calls (its module-level names ``batch_multiscale_cams``,
``peak_prompts``, ``compose_cpm_labels``; the back-end's ``prepare``/``decode``/
``encode`` methods; the embedding store's ``get_batch``; ``CPM.make_targets``),
each timed exclusively (a nested timed call is not counted twice; CUDA is
synchronised around each one). Sections: ``data`` (``next`` on the dataloader;
n/a with ``--synthetic``: batches are made outside the clock), ``train``
(the data preprocessor's device copy and the forward/backward/step of the training
losses, incl. SSC and ``loss_cpm``),
``cams`` (CPM's multi-scale no-grad CAMs), ``peaks``, ``encode`` (online),
``cache_read`` (cached), ``decode`` (SAM prepare + decode) and ``compose`` (the
rest of CPM: frames, resampling, label composition). A name that cannot be found
is reported (``unwrapped`` in the JSON) and its section is n/a; its time then
counts in the section that calls it.

Memory: on CPU the RSS high-water mark of the process, sampled with psutil every
10 ms during the timed iterations (dataloader workers are other processes and not
included), and ``ru_maxrss`` (whole process, set-up included); on CUDA
``torch.cuda.max_memory_allocated`` over the timed iterations.

Precision: fp32 rows and, with ``--amp``, reduced-precision rows. On CUDA that is
``tools/train.py --amp``: MMEngine's ``AmpOptimWrapper`` (fp16 autocast with a
dynamic loss scale; ``--amp-dtype bfloat16`` for bf16). On CPU,
``AmpOptimWrapper`` cannot be used: its constructor asserts a CUDA/NPU/MLU/MUSA
device, its autocast follows MMEngine's current device (CUDA when present, even
for a model on the CPU), and MMEngine's CPU autocast accepts only bfloat16 (fp16
autocast is not generally supported on CPU). So on CPU ``--amp`` keeps the
config's ``OptimWrapper`` and runs its ``optim_context`` (data preprocessor and
forward) under ``mmengine.runner.amp.autocast(device_type='cpu',
dtype=torch.bfloat16)``, exactly what ``AmpOptimWrapper.optim_context`` adds,
without a loss scaler (bf16 has fp32's exponent range). CPM's SAM part runs in
fp32 inside autocast in both cases (``CPM.refine``).

Threads: torch's intra-op threads are set to ``--threads``
(:func:`s2c.utils.threads.set_num_threads`), default the cores this process may run
on (``len(os.sched_getaffinity(0))``). The header also names what ``tools/train.py``
would use (``env_cfg.num_threads``, ``S2C_NUM_THREADS``, else the cores less one per
data-loader worker), which can be fewer.

Output: a markdown table per row (s/iter, images/s, peak memory, the share of each
section) and the two ratios the project tracks: cached-CPM iteration over the
``ssc`` (classifier + SSC) iteration (target <= 3.0x) and SAM's share (decode +
cache read) of a cached-CPM iteration (target <= 2.5 %); written to
``--out-dir`` as ``benchmark_train_step.md`` and ``benchmark_train_step.json``.

Examples::

    # GPU machine, no dataset needed: the full-size VOC config with vit_h (random weights)
    python tools/analysis_tools/benchmark_train_step.py \\
        configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py --synthetic --device cuda --amp

    # CPU, the demo dataset of `make demo` (real batches and caches)
    python tools/analysis_tools/benchmark_train_step.py \\
        configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py --iters 5 --warmup 2

    # CPU, the full-size VOC config with a smaller SAM, two rows
    python tools/analysis_tools/benchmark_train_step.py \\
        configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py --synthetic --iters 2 \\
        --warmup 1 --rows ssc,cpm_cached --cfg-options model.cpm.backend.model_type=vit_b

``cpm_online`` encodes the crops ``model.cpm.backend.encode_batch_size`` at a time
(the back-end's default 2; set it with ``--cfg-options``).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import os.path as osp
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.amp import autocast
from mmengine.utils import import_modules_from_strings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis import build_train_config  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.caches import (  # noqa: E402
    MissingCacheError,
    check_caches,
    run_embedding_job,
    run_se_map_job,
    write_synthetic_embedding_cache,
)
from s2c.registry import MODELS  # noqa: E402
from s2c.structures import Geometry  # noqa: E402
from s2c.utils import resolve_device  # noqa: E402
from s2c.utils.profiling import PeakRSS  # noqa: E402
from s2c.utils.segments import renumber_segments  # noqa: E402
from s2c.utils.threads import (  # noqa: E402
    THREADS_ENV,
    available_cores,
    default_num_threads,
    set_num_threads,
)

ROWS = ('classifier', 'ssc', 'cpm_cached', 'cpm_online')
DESCRIPTIONS = {
    'classifier': 'classifier (loss_cls)',
    'ssc': '+ SSC',
    'cpm_cached': '+ SSC + CPM cached',
    'cpm_online': '+ SSC + CPM online (official)',
}
#: Sections of an iteration, in table order.
SECTIONS = ('data', 'train', 'cams', 'peaks', 'encode', 'cache_read', 'decode', 'compose')
#: Sections that apply to a row (the others are n/a).
ROW_SECTIONS = {
    'classifier': ('data', 'train'),
    'ssc': ('data', 'train'),
    'cpm_cached': ('data', 'train', 'cams', 'peaks', 'cache_read', 'decode', 'compose'),
    'cpm_online': ('data', 'train', 'cams', 'peaks', 'encode', 'decode', 'compose'),
}
#: Timed name -> section (several names may add up in one section).
RAW_TO_SECTION = {
    'data': 'data', 'train_step': 'train', 'batch_multiscale_cams': 'cams',
    'peak_prompts': 'peaks', 'backend.encode': 'encode', 'store.get_batch': 'cache_read',
    'backend.prepare': 'decode', 'backend.decode': 'decode',
    'compose_cpm_labels': 'compose', 'cpm.make_targets': 'compose',
}
#: Module-level names of s2c/models/cpm/cpm.py that are wrapped.
CPM_FUNCTIONS = ('batch_multiscale_cams', 'peak_prompts', 'compose_cpm_labels')
CPM_MODULE = 's2c.models.cpm.cpm'
ORI_SHAPE = (375, 500)  # (H, W) of every synthetic original image
SAM_SHARE_TARGET = 2.5  # %
CACHED_RATIO_TARGET = 3.0  # x


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='training config file (with model.ssc / model.cpm)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. model.cpm.backend.model_type=vit_b')
    p.add_argument('--data-root', help='set data_root of every dataset (as tools/train.py)')
    p.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (CUDA if present)")
    p.add_argument('--amp', action='store_true',
                   help='also run reduced-precision rows (CUDA: AmpOptimWrapper; CPU: bf16)')
    p.add_argument('--amp-dtype', choices=('float16', 'bfloat16'), default='float16',
                   help='CUDA autocast dtype of --amp (CPU always uses bfloat16)')
    p.add_argument('--iters', type=int, default=5, help='timed iterations per row')
    p.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
    p.add_argument('--rows', default=','.join(ROWS), help=f'comma-separated subset of {ROWS}')
    p.add_argument('--synthetic', action='store_true',
                   help='synthetic batches and a random embedding cache (no dataset needed)')
    p.add_argument('--build-caches', action='store_true',
                   help='build missing SE-map / embedding cache entries before the rows')
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op threads (default: the cores available to the process)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out-dir', default='work_dirs/benchmark_train_step',
                   help='folder of benchmark_train_step.{md,json}')
    # internal: run one row in this process
    p.add_argument('--row', choices=ROWS, default=None, help=argparse.SUPPRESS)
    p.add_argument('--precision', default='fp32', help=argparse.SUPPRESS)
    p.add_argument('--result-file', default=None, help=argparse.SUPPRESS)
    p.add_argument('--embedding-dir', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = available_cores()
    if args.iters < 1 or args.warmup < 0:
        p.error('--iters must be >= 1 and --warmup >= 0')
    return args


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- config
def load_row_config(args: argparse.Namespace, row: str, precision: str = 'fp32',
                    device: torch.device | None = None) -> tuple[Config, list[str]]:
    """The training config of ``row``, as ``tools/train.py`` would load it, plus notes.

    Args:
        args: Parsed arguments (config, ``--cfg-options``, ``--data-root``, ``--synthetic``).
        row: One of :data:`ROWS`.
        precision: ``'fp32'`` or a reduced precision (``'fp16'``/``'bf16'``).
        device: Device of the row (CUDA reduced precision uses ``AmpOptimWrapper``).

    Returns:
        tuple: The config and notes on what was changed besides the row's losses.

    Raises:
        ValueError: The config has no ``model.ssc`` / ``model.cpm`` that the row needs.
    """
    cuda_amp = precision != 'fp32' and device is not None and device.type == 'cuda'
    cfg = build_train_config(args.config, amp=cuda_amp, cfg_options=args.cfg_options,
                             data_root=args.data_root)
    if cuda_amp and args.amp_dtype == 'bfloat16':
        cfg.optim_wrapper.dtype = 'bfloat16'
    notes = []
    model = cfg.model
    if row != 'classifier' and not model.get('ssc'):
        raise ValueError(f'row {row!r} needs model.ssc, which {args.config} does not set')
    if row.startswith('cpm') and not model.get('cpm'):
        raise ValueError(f'row {row!r} needs model.cpm, which {args.config} does not set')
    dataset = cfg.train_dataloader.dataset
    if row == 'classifier':
        model.ssc = None
        model.cpm = None
        if dataset.get('se_map_dir'):
            dataset.se_map_dir = None  # the CAM baseline loads no SE maps
    elif row == 'ssc':
        model.cpm = None
    else:
        cpm = model.cpm
        cpm.start_epoch = 0
        if cpm.get('start_iter') is not None:
            cpm.start_iter = 0
        cpm.embedding_source = row.split('_')[1]
        if row == 'cpm_online':
            cpm.embedding_dir = None
        elif args.synthetic:
            cpm.embedding_dir = args.embedding_dir
        if args.synthetic and cpm.backend.get('checkpoint') is not None:
            cpm.backend.checkpoint = None
            notes.append('SAM back-end: random weights (--synthetic)')
    pretrained = model.backbone.get('pretrained')
    if pretrained and not osp.isfile(pretrained):
        model.backbone.pretrained = None
        notes.append(f'backbone: random init ({pretrained} absent)')
    return cfg, notes


def crop_size(cfg: Config) -> tuple[int, int]:
    """``(H, W)`` of the training crops (``RandomCrop`` of the train pipeline)."""
    for t in cfg.train_dataloader.dataset.get('pipeline') or []:
        if t.get('type') == 'RandomCrop':
            size = t['crop_size']
            return (size, size) if isinstance(size, int) else tuple(size)
    raise ValueError('the train pipeline has no RandomCrop: cannot tell the crop size')


def rescale_range(cfg: Config, crop: int) -> tuple[int, int]:
    """``(min_long, max_long)`` of the pipeline's ``RandomRescaleLongSide`` (synthetic data)."""
    for t in cfg.train_dataloader.dataset.get('pipeline') or []:
        if t.get('type') == 'RandomRescaleLongSide':
            return int(t['min_long']), int(t['max_long'])
    return crop, 2 * crop


def sam_model_type(cfg: Config) -> str | None:
    """``model.cpm.backend.model_type`` or ``None`` (no CPM)."""
    cpm = cfg.model.get('cpm') or {}
    return (cpm.get('backend') or {}).get('model_type')


# ----------------------------------------------------------------------- synthetic data
def random_se_map(rng: np.random.Generator, size: tuple[int, int],
                  valid: np.ndarray) -> np.ndarray:
    """Blocky int64 SE map with ids ``0..K`` (renumbered), 0 on padding."""
    num_ids = int(rng.integers(20, 61))
    grid = rng.integers(1, num_ids + 1, size=(10, 10))
    grid[rng.random((10, 10)) < 0.05] = 0
    up = F.interpolate(torch.from_numpy(grid).float()[None, None], size=size,
                       mode='nearest')[0, 0].long().numpy()
    up[~valid] = 0
    return renumber_segments(up)


def random_geometry(rng: np.random.Generator, crop: tuple[int, int],
                    long_range: tuple[int, int]) -> Geometry:
    """Geometry of a crop of a rescaled, maybe flipped :data:`ORI_SHAPE` image."""
    h0, w0 = ORI_SHAPE
    long_side = int(rng.integers(long_range[0], long_range[1] + 1))
    scale = long_side / max(h0, w0)
    h, w = round(h0 * scale), round(w0 * scale)
    geo = Geometry.identity(h0, w0).rescale(h, w)
    if rng.random() < 0.5:
        geo = geo.hflip()

    def offset(size: int, side: int) -> int:  # as RandomCrop: negative = padding before
        space = size - side
        return int(rng.integers(space + 1)) if space >= 0 else -int(rng.integers(-space + 1))

    return geo.crop(offset(h, crop[0]), offset(w, crop[1]), crop[0], crop[1])


def synthetic_batch(rng: np.random.Generator, names: list[str], crop: tuple[int, int],
                    long_range: tuple[int, int], num_classes: int) -> dict:
    """A collated batch as the train dataloader yields it (``sample_list_collate``)."""
    inputs, samples = [], []
    for name in names:
        geo = random_geometry(rng, crop, long_range)
        valid = geo.valid_mask()
        img = torch.from_numpy(rng.standard_normal((3, *crop), dtype=np.float32))
        img[:, ~torch.from_numpy(valid)] = 0.0  # padding = mean colour
        label = torch.zeros(num_classes)
        label[rng.choice(num_classes, size=int(rng.integers(1, min(3, num_classes) + 1)),
                         replace=False)] = 1.0
        inputs.append(img)
        samples.append(dict(name=name, img_path=f'{name}.jpg', gt_label=label,
                            ori_shape=ORI_SHAPE, img_shape=crop, geometry=geo,
                            se_ids='crop', valid=torch.from_numpy(valid),
                            se_map=torch.from_numpy(random_se_map(rng, crop, valid))))
    return dict(inputs=inputs, data_samples=samples)


def synthetic_names(batch_size: int) -> list[str]:
    """Image ids of the synthetic batches (and of the synthetic embedding cache)."""
    return [f'bench_{i:03d}' for i in range(batch_size)]


# ----------------------------------------------------------------------------- timing
class SectionTimer:
    """Exclusive wall time of named, possibly nested sections (CUDA synchronised).

    A section's time excludes the timed sections it calls, so the sections of an
    iteration add up to the iteration without double counting.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.times: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []

    def sync(self) -> None:
        """Wait for queued CUDA work (no-op on CPU)."""
        if self.cuda:
            torch.cuda.synchronize()

    def reset(self) -> None:
        """Forget the accumulated times (start of an iteration)."""
        self.times.clear()
        self.calls.clear()

    @contextlib.contextmanager
    def section(self, key: str) -> Iterator[None]:
        """Time the block as ``key`` (exclusive of nested sections)."""
        self.sync()
        t0 = time.perf_counter()
        self._stack.append([key, 0.0])
        try:
            yield
        finally:
            self.sync()
            dt = time.perf_counter() - t0
            _, nested = self._stack.pop()
            self.times[key] += dt - nested
            self.calls[key] += 1
            if self._stack:
                self._stack[-1][1] += dt

    def wrap(self, fn: Callable, key: str) -> Callable:
        """``fn`` timed as ``key``."""

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with self.section(key):
                return fn(*args, **kwargs)

        return timed


def install_timers(model: torch.nn.Module, timer: SectionTimer,
                   device: torch.device) -> list[str]:
    """Wrap what CPM calls; returns the names that could not be found.

    Module-level functions are replaced in :data:`CPM_MODULE`'s namespace and in
    every other loaded ``s2c.models`` module holding the same function (so a
    caller moved to the classifier is timed as well); methods are replaced on
    the CPM, back-end and store instances.
    """
    missing = []
    cpm = getattr(model, 'cpm', None)
    if cpm is None:
        return missing
    cpm_module = sys.modules.get(CPM_MODULE)
    for name in CPM_FUNCTIONS:
        original = getattr(cpm_module, name, None) if cpm_module is not None else None
        holders = [m for k, m in list(sys.modules.items())
                   if k.startswith('s2c.models') and m is not None
                   and (original is None and callable(getattr(m, name, None))
                        or original is not None and getattr(m, name, None) is original)]
        if not holders:
            missing.append(f'{CPM_MODULE}.{name}')
            continue
        for module in holders:
            setattr(module, name, timer.wrap(getattr(module, name), name))

    def wrap_method(obj, attr: str, key: str, label: str) -> None:
        fn = getattr(obj, attr, None) if obj is not None else None
        if not callable(fn):
            missing.append(label)
            return
        object.__setattr__(obj, attr, timer.wrap(fn, key))

    wrap_method(cpm, 'make_targets', 'cpm.make_targets', 'CPM.make_targets')
    backend = cpm.backend(device) if callable(getattr(cpm, 'backend', None)) else None
    wrap_method(backend, 'prepare', 'backend.prepare', 'backend.prepare')
    wrap_method(backend, 'decode', 'backend.decode', 'backend.decode')
    if getattr(cpm, 'embedding_source', None) == 'online':
        wrap_method(backend, 'encode', 'backend.encode', 'backend.encode')
    else:
        wrap_method(getattr(cpm, 'store', None), 'get_batch', 'store.get_batch',
                    'CPM.store.get_batch')
    return missing


def unwrapped_sections(missing: list[str]) -> set[str]:
    """Sections that lack every one of their timed names."""
    key_of = {'CPM.make_targets': 'cpm.make_targets', 'backend.prepare': 'backend.prepare',
              'backend.decode': 'backend.decode', 'backend.encode': 'backend.encode',
              'CPM.store.get_batch': 'store.get_batch'}
    absent = {key_of.get(m, m.rsplit('.', 1)[-1]) for m in missing}
    out = set()
    for section in SECTIONS:
        keys = [k for k, s in RAW_TO_SECTION.items() if s == section]
        if keys and all(k in absent for k in keys):
            out.add(section)
    return out


# -------------------------------------------------------------------------- one row
def reduced_precision_context(optim_wrapper, dtype: torch.dtype) -> None:
    """CPU bf16: wrap ``optim_wrapper.optim_context`` in MMEngine's CPU autocast."""
    base = optim_wrapper.optim_context

    @contextlib.contextmanager
    def optim_context(model):
        with base(model), autocast(device_type='cpu', dtype=dtype):
            yield

    optim_wrapper.optim_context = optim_context


def autocast_dtype(device: torch.device) -> str | None:
    """The autocast dtype active for ``device`` here (``None``: autocast off)."""
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        on, dtype = torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type)
    elif device.type == 'cpu':
        on, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    else:
        on, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return str(dtype).replace('torch.', '') if on else None


def build_parts(cfg: Config, device: torch.device, precision: str):
    """Model (initialised, on ``device``, train mode) and optimizer wrapper of ``cfg``."""
    import_modules_from_strings(**cfg.get('custom_imports', dict(imports=['s2c.models'])))
    init_default_scope(cfg.get('default_scope', 's2c'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if precision != 'fp32' and device.type == 'cpu':
        reduced_precision_context(optim_wrapper, torch.bfloat16)
    return model, optim_wrapper


def run_row(args: argparse.Namespace) -> dict:
    """Time ``args.row`` in this process; returns the result dict."""
    row, precision = args.row, args.precision
    set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    # keep init_weights' per-parameter report out of the output
    if not MMLogger.check_instance_created('benchmark_train_step'):
        MMLogger.get_instance('benchmark_train_step', log_level='WARNING')
    cfg, notes = load_row_config(args, row, precision, device)
    t_setup = time.perf_counter()
    model, optim_wrapper = build_parts(cfg, device, precision)
    with optim_wrapper.optim_context(model):  # what autocast the forward runs under
        amp_dtype = autocast_dtype(device)
    timer = SectionTimer(device.type == 'cuda')
    missing = install_timers(model, timer, device)
    batch_size = int(cfg.train_dataloader.batch_size)
    crop = crop_size(cfg)
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        names = synthetic_names(batch_size)
        long_range = rescale_range(cfg, max(crop))
        num_classes = int(cfg.model.num_classes)
        loader = None
    else:
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=args.seed)
        batches = iter(loader)
    hub = MessageHub.get_current_instance()  # CPM reads epoch / iter from it
    hub_before = {k: hub.get_info(k) for k in ('epoch', 'iter')}
    hub.update_info('epoch', 0)
    setup_s = time.perf_counter() - t_setup
    timer.sync()
    rss_setup = psutil.Process().memory_info().rss
    log(f'[{row} {precision}] set-up {setup_s:.1f} s, RSS {rss_setup / 2**30:.2f} GiB'
        + (f'; not found (n/a): {", ".join(missing)}' if missing else ''))

    times: list[float] = []
    per_iter: list[dict[str, float]] = []
    calls: dict[str, int] = defaultdict(int)
    losses_seen: dict[str, list[float]] = defaultdict(list)
    total = args.warmup + args.iters
    with PeakRSS() as rss:
        for it in range(total):
            timed = it >= args.warmup
            if timed and it == args.warmup:
                if device.type == 'cuda':
                    torch.cuda.reset_peak_memory_stats()
                rss.peak = rss.rss()  # steady state only
            hub.update_info('iter', it)
            if args.synthetic:
                data = synthetic_batch(rng, names, crop, long_range, num_classes)
            timer.reset()
            timer.sync()
            t0 = time.perf_counter()
            if not args.synthetic:
                with timer.section('data'):
                    try:
                        data = next(batches)
                    except StopIteration:  # next epoch
                        batches = iter(loader)
                        data = next(batches)
            with timer.section('train_step'):
                log_vars = model.train_step(data, optim_wrapper)
            timer.sync()
            dt = time.perf_counter() - t0
            values = {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                      for k, v in log_vars.items()}
            for k, v in values.items():
                losses_seen[k].append(v)
            if timed:
                times.append(dt)
                per_iter.append(dict(timer.times))
                for k, n in timer.calls.items():
                    calls[k] += n
            log(f'[{row} {precision}] iter {it + 1}/{total} {"" if timed else "(warm-up) "}'
                f'{dt:.3f} s  ' + '  '.join(f'{k} {v:.4f}' for k, v in values.items()))
    for key, value in hub_before.items():
        hub.update_info(key, value)
    mean = float(np.mean(times))
    raw = {k: float(np.mean([p.get(k, 0.0) for p in per_iter])) for k in calls}
    applicable = set(ROW_SECTIONS[row]) - ({'data'} if args.synthetic else set())
    absent = unwrapped_sections(missing)
    sections = {}
    for section in SECTIONS:
        if section not in applicable or section in absent:
            sections[section] = None
            continue
        keys = [k for k, s in RAW_TO_SECTION.items() if s == section]
        seconds = sum(raw.get(k, 0.0) for k in keys)
        sections[section] = dict(seconds=seconds, share=seconds / mean,
                                 calls=sum(calls.get(k, 0) for k in keys))
    measured = sum(s['seconds'] for s in sections.values() if s)
    result = dict(
        row=row, precision=precision, pid=os.getpid(), device=str(device),
        torch_threads=torch.get_num_threads(), batch_size=batch_size, crop=list(crop),
        synthetic=bool(args.synthetic), sam_model_type=sam_model_type(cfg),
        optim_wrapper=type(optim_wrapper).__name__, autocast_dtype=amp_dtype,
        iters=args.iters, warmup=args.warmup,
        times=times, mean=mean, std=float(np.std(times)), median=float(np.median(times)),
        images_per_s=batch_size / mean,
        setup_s=setup_s, sections=sections, other_seconds=mean - measured, raw_seconds=raw,
        calls=dict(calls), unwrapped=missing, notes=notes,
        losses={k: v for k, v in losses_seen.items()},
        losses_finite=bool(all(np.isfinite(v).all() for v in losses_seen.values())),
        cpm_active='loss_cpm' in losses_seen)
    if row.startswith('cpm') and not result['cpm_active']:
        result['notes'].append('WARNING: loss_cpm never appeared (CPM did not run)')
    if device.type == 'cuda':
        result['peak_mem_bytes'] = int(torch.cuda.max_memory_allocated())
        result['peak_mem_kind'] = 'torch.cuda.max_memory_allocated (timed iterations)'
    else:
        result['peak_mem_bytes'] = int(rss.peak)
        result['peak_mem_kind'] = 'RSS high-water mark (psutil, timed iterations)'
    result['process_maxrss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if loader is not None:
        del batches  # stop the workers before the process ends
    return result


# --------------------------------------------------------------------------- driver
def cfg_option_value(value) -> str:
    """``value`` in ``--cfg-options`` syntax (lists as ``[a,b]``, tuples as ``(a,b)``)."""
    if isinstance(value, (list, tuple)):
        inner = ','.join(cfg_option_value(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    return str(value)


def cache_cli_args(args: argparse.Namespace) -> str:
    """``--data-root`` / ``--cfg-options`` repeated in a cache-building command."""
    out = [f'--data-root {shlex.quote(args.data_root)}'] if args.data_root else []
    if args.cfg_options:
        out.append('--cfg-options ' + ' '.join(
            shlex.quote(f'{k}={cfg_option_value(v)}') for k, v in args.cfg_options.items()))
    return ' '.join(out)


def ensure_caches(args: argparse.Namespace, rows: list[str]) -> None:
    """Real data: every cache a row reads exists, or is built with ``--build-caches``.

    Raises:
        MissingCacheError: A cache is missing and ``--build-caches`` was not given
            (the message holds the command that builds it).
    """
    for row in rows:
        cfg, _ = load_row_config(args, row)
        try:
            check_caches(cfg, cache_cli_args(args))
            continue
        except MissingCacheError as e:
            if not args.build_caches:
                raise MissingCacheError(f'{e} (or rerun this benchmark with --build-caches, or '
                                        'with --synthetic)') from e
        log(f'[{row}] building the missing cache entries (--build-caches)')
        if cfg.train_dataloader.dataset.get('se_map_dir'):
            summary = run_se_map_job(cfg, progress=False)
            if not summary.ok:
                raise RuntimeError(f'SE-map cache job failed: {summary}')
        if row == 'cpm_cached':
            summary = run_embedding_job(cfg, progress=False)
            if not summary.ok:
                raise RuntimeError(f'embedding cache job failed: {summary}')
        check_caches(cfg)


def child_argv(argv: list[str], row: str, precision: str, result_file: str,
               embedding_dir: str | None) -> list[str]:
    """Command line of the subprocess that runs one row."""
    out = [sys.executable, osp.abspath(__file__), *argv, '--row', row, '--precision', precision,
           '--result-file', result_file]
    if embedding_dir:
        out += ['--embedding-dir', embedding_dir]
    return out


def fmt_mem(nbytes: float) -> str:
    """Bytes as GiB (MiB under 1 GiB)."""
    return f'{nbytes / 2**30:.2f} GiB' if nbytes >= 2**30 else f'{nbytes / 2**20:.0f} MiB'


def ratios(results: list[dict]) -> list[dict]:
    """The two tracked ratios per precision (when their rows ran)."""
    out = []
    for precision in dict.fromkeys(r['precision'] for r in results):
        by_row = {r['row']: r for r in results if r['precision'] == precision}
        cached = by_row.get('cpm_cached')
        if cached is None:
            continue
        entry = dict(precision=precision)
        if 'ssc' in by_row:
            value = cached['mean'] / by_row['ssc']['mean']
            entry['cached_over_ssc'] = dict(value=value, target=CACHED_RATIO_TARGET,
                                            ok=value <= CACHED_RATIO_TARGET)
        parts = [cached['sections'].get(k) for k in ('decode', 'cache_read')]
        if all(parts):
            value = 100.0 * sum(p['seconds'] for p in parts) / cached['mean']
            entry['sam_share_percent'] = dict(value=value, target=SAM_SHARE_TARGET,
                                              ok=value <= SAM_SHARE_TARGET)
        out.append(entry)
    return out


def train_threads(args: argparse.Namespace) -> int:
    """Intra-op threads ``tools/train.py`` would use for this config (``s2c.apis.train``)."""
    cfg = build_train_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
    explicit = (cfg.get('env_cfg') or {}).get('num_threads')
    if explicit is None and os.environ.get(THREADS_ENV, '').strip().isdigit():
        explicit = int(os.environ[THREADS_ENV])
    workers = int(cfg.train_dataloader.get('num_workers', 0) or 0)
    return int(explicit) if explicit is not None else default_num_threads(workers)


def header_lines(args: argparse.Namespace, first: dict, load: dict[str, list[float]]
                 ) -> list[str]:
    """The set-up of the run, one line each."""
    device = first['device']
    if device.startswith('cuda'):
        device += f' ({torch.cuda.get_device_name(torch.device(device))})'
    else:
        device += f' ({platform.processor() or platform.machine()})'
    cores = available_cores()
    data = ('synthetic batches (made outside the clock)' if args.synthetic
            else 'the config\'s train dataloader')
    return [
        f'- config: `{args.config}`'
        + (f' with `--cfg-options {" ".join(f"{k}={v}" for k, v in args.cfg_options.items())}`'
           if args.cfg_options else '')
        + (f', data root `{args.data_root}`' if args.data_root else ''),
        f'- device: {device}; torch {torch.__version__}; intra-op threads '
        f'{first["torch_threads"]} of {cores} available cores (tools/train.py would use '
        f'{train_threads(args)})',
        f'- batch {first["batch_size"]} x {first["crop"][0]}x{first["crop"][1]} crops; data: '
        f'{data}; SAM {first.get("sam_model_type") or "n/a"}',
        f'- {args.iters} timed iteration(s) after {args.warmup} warm-up, each row in its own '
        f'process; load average (1/5/15 min) at start '
        f'{" / ".join(f"{v:.2f}" for v in load["start"])}, at end '
        f'{" / ".join(f"{v:.2f}" for v in load["end"])}',
    ]


def format_report(args: argparse.Namespace, results: list[dict],
                  load: dict[str, list[float]]) -> str:
    """Markdown: header, the per-row table, the section shares and the ratios."""
    lines = ['# Training-step benchmark (tools/analysis_tools/benchmark_train_step.py)', '']
    first = dict(results[0])
    first['sam_model_type'] = next((r['sam_model_type'] for r in results if r['sam_model_type']),
                                   None)
    lines += header_lines(args, first, load) + ['']
    base = {r['precision']: r for r in results if r['row'] == 'classifier'}
    lines += ['| row | precision | s/iter (mean ± std) | median | images/s | vs classifier '
              '| peak memory | process peak RSS |', '|---|---|---:|---:|---:|---:|---:|---:|']
    for r in results:
        b = base.get(r['precision'])
        rel = f'{r["mean"] / b["mean"]:.2f}x' if b else 'n/a'
        lines.append(f'| {DESCRIPTIONS[r["row"]]} | {r["precision"]} | {r["mean"]:.3f} ± '
                     f'{r["std"]:.3f} | {r["median"]:.3f} | {r["images_per_s"]:.2f} | {rel} | '
                     f'{fmt_mem(r["peak_mem_bytes"])} | {fmt_mem(r["process_maxrss_bytes"])} |')
    lines += ['', f'Peak memory: {results[0]["peak_mem_kind"]}.', '',
              'Where the time goes, s/iter (share of the iteration); n/a = not part of the row '
              '(or not found):', '',
              '| row | precision | ' + ' | '.join(SECTIONS) + ' |',
              '|---|---|' + '---:|' * len(SECTIONS)]
    for r in results:
        cells = []
        for section in SECTIONS:
            s = r['sections'].get(section)
            cells.append('n/a' if s is None else f'{s["seconds"]:.3f} ({100 * s["share"]:.1f} %)')
        lines.append(f'| {r["row"]} | {r["precision"]} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'train = data preprocessor + forward/backward/step of the training losses '
              '(incl. SSC and loss_cpm); cams = CPM\'s multi-scale no-grad CAMs; decode = SAM '
              'prepare + decode; compose = the rest of CPM.', '']
    for entry in ratios(results):
        p = entry['precision']
        if 'cached_over_ssc' in entry:
            e = entry['cached_over_ssc']
            lines.append(f'- [{p}] cached-CPM iteration / classifier+SSC iteration: '
                         f'**{e["value"]:.2f}x** (target <= {e["target"]:.1f}x: '
                         f'{"PASS" if e["ok"] else "FAIL"})')
        if 'sam_share_percent' in entry:
            e = entry['sam_share_percent']
            lines.append(f'- [{p}] SAM share (decode + cache read) of a cached-CPM iteration: '
                         f'**{e["value"]:.2f} %** (target <= {e["target"]:.1f} %: '
                         f'{"PASS" if e["ok"] else "FAIL"})')
    notes: dict[str, list[str]] = {}  # note -> rows
    for r in results:
        label = f'{r["row"]} {r["precision"]}'
        for note in r['notes']:
            notes.setdefault(note, []).append(label)
        if r['unwrapped']:
            notes.setdefault('not found (n/a), timed inside its caller: '
                             + ', '.join(r['unwrapped']), []).append(label)
        if not r['losses_finite']:
            notes.setdefault('WARNING: non-finite losses', []).append(label)
    for note, labels in notes.items():
        lines.append(f'- note [{", ".join(labels)}]: {note}')
    return '\n'.join(lines) + '\n'


def run_all(args: argparse.Namespace, argv: list[str]) -> dict:
    """Run every requested row in its own subprocess; write and return the report."""
    rows = [r.strip() for r in args.rows.split(',') if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f'unknown rows {unknown}; choose from {list(ROWS)}')
    device = resolve_device(args.device)
    precisions = ['fp32']
    if args.amp:
        precisions.append('bf16' if device.type == 'cpu' or args.amp_dtype == 'bfloat16'
                          else 'fp16')
    for row in rows:  # fail early on a config that lacks a row's module
        load_row_config(args, row)
    load = os.getloadavg()
    cfg, _ = load_row_config(args, rows[0])
    log(f'benchmark_train_step: {args.config}, device {device}, torch {torch.__version__}, '
        f'{args.threads} threads, batch {cfg.train_dataloader.batch_size} x '
        f'{"x".join(map(str, crop_size(cfg)))}, rows {rows} x {precisions}, '
        f'{"synthetic" if args.synthetic else "real"} data, load average {load[0]:.2f}')
    results = []
    with tempfile.TemporaryDirectory(prefix='s2c-bench-step-') as tmp:
        embedding_dir = None
        if args.synthetic and 'cpm_cached' in rows:
            cached_cfg, _ = load_row_config(args, 'cpm_cached')
            embedding_dir = osp.join(tmp, 'embeddings')
            model_type = sam_model_type(cached_cfg)
            write_synthetic_embedding_cache(
                embedding_dir, synthetic_names(int(cached_cfg.train_dataloader.batch_size)),
                model_type, ORI_SHAPE, args.seed, 'tools/analysis_tools/benchmark_train_step.py')
            log(f'wrote a temporary {model_type} embedding cache of random records to '
                f'{embedding_dir}')
        elif not args.synthetic:
            ensure_caches(args, rows)
        jobs = [(row, p) for p in precisions for row in rows]
        for i, (row, precision) in enumerate(jobs):
            log(f'=== row {i + 1}/{len(jobs)}: {row} ({DESCRIPTIONS[row]}), {precision} ===')
            result_file = osp.join(tmp, f'{row}_{precision}.json')
            t0 = time.perf_counter()
            proc = subprocess.run(child_argv(argv, row, precision, result_file, embedding_dir))
            if proc.returncode != 0 or not osp.isfile(result_file):
                raise RuntimeError(f'row {row} ({precision}) failed (exit code '
                                   f'{proc.returncode}); its error is printed above')
            with open(result_file) as f:
                result = json.load(f)
            results.append(result)
            log(f'=== {row} {precision}: {result["mean"]:.3f} ± {result["std"]:.3f} s/iter, '
                f'{result["images_per_s"]:.2f} images/s, peak {fmt_mem(result["peak_mem_bytes"])}'
                f' ({time.perf_counter() - t0:.0f} s with set-up) ===')
    load = dict(start=list(load), end=list(os.getloadavg()))
    report = format_report(args, results, load)
    print(report, flush=True)
    out = dict(config=args.config, cfg_options=args.cfg_options, synthetic=args.synthetic,
               device=str(device), torch=torch.__version__, threads=args.threads,
               parent_pid=os.getpid(), load_average=load, rows=results,
               ratios=ratios(results), report=report)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'benchmark_train_step.md'), 'w') as f:
        f.write(report)
    with open(osp.join(args.out_dir, 'benchmark_train_step.json'), 'w') as f:
        json.dump(out, f, indent=2, default=str)
    log(f'wrote {osp.join(args.out_dir, "benchmark_train_step.md")} and .json')
    return out


@cli_entry
def main(argv: list[str] | None = None) -> int:
    """Entry point: without ``--row`` run every row in subprocesses; with it, one row."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.row is not None:  # child: one row
        result = run_row(args)
        with open(args.result_file, 'w') as f:
            json.dump(result, f)
        return 0
    run_all(args, argv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
