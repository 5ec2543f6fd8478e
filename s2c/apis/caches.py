"""The two cache tools' command line: shared flags, the job call, the exit status."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from mmengine.config import DictAction

from s2c.caches.runner import JobOptions
from s2c.utils.job_summary import JobSummary

from .config import load_config


def add_job_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags both cache tools take (one per :class:`~s2c.caches.JobOptions` field)."""
    parser.add_argument('config', help='config file (with sam / se_maps / sam_embeddings blocks)')
    parser.add_argument('--split', help='split NAME -> <data_root>/ImageSets/Segmentation/NAME.txt '
                        '(default: train_dataloader.dataset.ann_file), or a .txt path')
    parser.add_argument('--out', help='cache folder (default from the config: '
                        'train_dataloader.dataset.se_map_dir / model.cpm.embedding_dir)')
    parser.add_argument('--shard', help='I/N: process images k with k %% N == I (torchrun ranks '
                        'split it further automatically)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a cache made with other settings and recompute entries')
    parser.add_argument('--verify', action='store_true',
                        help='only check every entry in full; exit 1 when any is bad or missing '
                        '(the output ends with the remedy)')
    parser.add_argument('--repair', action='store_true',
                        help='compute like a resumed run, but check existing entries in full '
                        'first (as --verify) and delete and recompute the bad ones')
    parser.add_argument('--workers', type=int, default=2, help='image-decoding threads')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    parser.add_argument('--data-root', help='move the config to this dataset root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. sam.device=cpu')
    return parser


def run_cache_cli(job: Callable[..., JobSummary], args: argparse.Namespace,
                  **extra: Any) -> int:
    """Load the config, run ``job`` with the shared flags, print the summary.

    Returns:
        int: 0 when every entry was written (or is good), 1 when an image failed
        or ``--verify`` found a bad entry, 2 on a configuration error (a cache of
        other settings, an unreadable manifest, a missing cache under
        ``--verify``, a bad argument), printed as ``error: ...`` without a traceback.
    """
    try:
        cfg = load_config(args.config, cfg_options=args.cfg_options, data_root=args.data_root)
        options = JobOptions(split=args.split, out=args.out, shard=args.shard,
                             overwrite=args.overwrite, verify=args.verify, repair=args.repair,
                             num_workers=args.workers, progress=not args.no_progress,
                             batch_size=getattr(args, 'batch_size', 1),
                             degradation=getattr(args, 'degradation', None),
                             degradation_seed=getattr(args, 'degradation_seed', 0))
        summary = job(cfg, options, **extra)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f'error: {msg}', file=sys.stderr, flush=True)
        return 2
    print(summary.format(), flush=True)
    return 0 if summary.ok else 1
