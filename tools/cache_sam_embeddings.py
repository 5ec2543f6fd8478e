"""Cache SAM image embeddings (and optionally early ViT features) of a dataset, once.

    python tools/cache_sam_embeddings.py CONFIG [--split NAME] [--out DIR] [--shard I/N]
                                         [--overwrite] [--verify] [--repair] [--batch-size B]
    torchrun --nproc_per_node 8 tools/cache_sam_embeddings.py CONFIG   # each rank takes its share

Writes <embedding_dir>/<name>.npy (float16 records, or per-channel int8 at half the size
with --cfg-options sam_embeddings.dtype=int8; see s2c/caches/embedding_store.py) and
manifest.json, where embedding_dir is model.cpm.embedding_dir of the config. Resumable
(rerun to finish; --repair recomputes the entries --verify finds bad). Exit status 1 when
an image failed or --verify found a bad entry, 2 on a configuration error. The logic lives
in s2c.caches.run_embedding_job. tools/cache_sam.py builds this cache and the SE maps
together, with one image-encoder pass per image.
"""
from __future__ import annotations

import argparse
import sys

from s2c.apis.caches import add_job_args, run_cache_cli
from s2c.apis.cli import cli_entry
from s2c.caches import run_embedding_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_job_args(parser)
    parser.add_argument('--provider', help=argparse.SUPPRESS)  # same flags as cache_se_maps.py
    parser.add_argument('--batch-size', type=int, default=1, help='images per encoder call')
    parser.add_argument('--degradation', metavar='NAME:LEVEL',
                        help='encode degraded images (s2c.datasets.degradations, levels 1-5) '
                             'into --out (their own cache)')
    parser.add_argument('--degradation-seed', type=int, default=0)
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.provider:
        print('warning: --provider has no effect on the embedding cache', file=sys.stderr)
    return run_cache_cli(run_embedding_job, args)


if __name__ == '__main__':
    sys.exit(main())
