"""Cache both SAM caches of a config (SE maps and image embeddings), encoding each image once.

    python tools/cache_sam.py CONFIG [--provider NAME] [--split NAME] [--se-out DIR]
                              [--embedding-out DIR] [--shard I/N] [--overwrite] [--verify]
                              [--repair] [--batch-size B]
    torchrun --nproc_per_node 8 tools/cache_sam.py CONFIG   # each rank takes its share

Writes what tools/cache_se_maps.py and tools/cache_sam_embeddings.py write (the same
files, the same manifests: either tool resumes a cache made here and vice versa), into
the training dataset's se_map_dir and model.cpm.embedding_dir, but with a SAM-based SE
provider an image that both caches miss goes through SAM's image encoder once (the
embedding the segment-everything generator decodes from is the one stored). A config
that reads only one of the caches gets that one. Resumable per image and per cache.
Exit status 1 when an image failed or --verify found a bad entry, 2 on a configuration
error. The logic lives in s2c.caches.run_sam_cache_jobs.
"""
from __future__ import annotations

import argparse
import sys

from s2c.apis.caches import add_job_args, run_cache_cli
from s2c.apis.cli import cli_entry
from s2c.caches import run_sam_cache_jobs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_job_args(parser)
    parser.add_argument('--provider', help='SE provider registry name (overrides '
                        'se_maps.provider.type), e.g. sam_amg, sam_amg_reference')
    parser.add_argument('--se-out', help='SE-map folder (default: the config\'s '
                        'train_dataloader.dataset.se_map_dir)')
    parser.add_argument('--embedding-out', help='embedding folder (default: the config\'s '
                        'model.cpm.embedding_dir)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per encoder call for images that need only the embedding')
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cache_cli(run_sam_cache_jobs, args, provider=args.provider,
                         se_out=args.se_out, embedding_out=args.embedding_out)


if __name__ == '__main__':
    sys.exit(main())
