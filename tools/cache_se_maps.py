"""Cache SAM "segment everything" maps (SE maps) of a dataset, once.

    python tools/cache_se_maps.py CONFIG [--provider NAME] [--split NAME] [--out DIR]
                                  [--shard I/N] [--overwrite] [--verify] [--repair]
    torchrun --nproc_per_node 8 tools/cache_se_maps.py CONFIG   # each rank takes its share

Writes <se_map_dir>/<name>.png (uint16, 0 = no segment) and manifest.json, where
se_map_dir is the training dataset's (relative to data_root). Resumable (rerun to
finish; --repair recomputes the entries --verify finds bad). Exit status 1 when an
image failed or --verify found a bad entry, 2 on a configuration error (e.g. the
folder holds a cache of other settings).
The logic lives in s2c.caches.run_se_map_job. tools/cache_sam.py builds this cache and
the embedding cache together with one image-encoder pass per image.
"""
from __future__ import annotations

import argparse
import sys

from s2c.apis.caches import add_job_args, run_cache_cli
from s2c.apis.cli import cli_entry
from s2c.caches import run_se_map_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_job_args(parser)
    parser.add_argument('--provider', help='SE provider registry name (overrides '
                        'se_maps.provider.type), e.g. sam_amg, sam_amg_reference, felzenszwalb')
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cache_cli(run_se_map_job, args, provider=args.provider)


if __name__ == '__main__':
    sys.exit(main())
