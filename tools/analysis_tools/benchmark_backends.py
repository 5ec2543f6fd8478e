"""Cost of each prompt back-end (a script, not a test).

For every registered prompt back-end, built with random weights of one model
type (default ``vit_b``) through its config, on random features of
``--images`` images (embedding, early ViT block, reference maps of 20 classes:
whatever the back-end requires) and ``--prompts`` prompt sets (1-3 positive
points each, one class each, spread over the images), the script reports:

- ``prepare`` seconds per image (per-image work: HQ-SAM's / RobustSAM's fused
  features, PerSAM's target maps);
- ``decode`` seconds per batch of the prompt sets (PerSAM: its three steps;
  PerSAM-F: its weight fit and cascade);
- peak extra memory during prepare + decode (CPU: psutil RSS above the RSS
  before, sampled every 5 ms; CUDA: ``torch.cuda.max_memory_allocated``);
- parameters the back-end adds over vanilla SAM's prompt encoder + mask decoder.

Times: mean over ``--repeats`` runs after one warm-up run (CUDA synchronised).
Random weights: the cost is the real one, the masks are meaningless.

Example (CPU, vit_b)::

    python tools/analysis_tools/benchmark_backends.py --repeats 3 --json backends.json
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.registry import PROMPT_BACKENDS  # noqa: E402
from s2c.sam.build import encoder_embed_dim  # noqa: E402
from s2c.structures import ImageFeatures, PromptBatch  # noqa: E402
from s2c.utils.device import resolve_device  # noqa: E402
from s2c.utils.profiling import PeakRSS  # noqa: E402


def registered_backends() -> list[str]:
    """The back-ends s2c registers."""
    PROMPT_BACKENDS.import_from_location()
    return sorted(name for name, cls in PROMPT_BACKENDS.module_dict.items()
                  if cls.__module__.startswith('s2c.'))


def bench_inputs(model_type: str, images: int, prompts: int, img_size: int, seed: int = 0
                 ) -> tuple[ImageFeatures, PromptBatch]:
    """Random features (with early block and references) and prompt sets."""
    g = torch.Generator().manual_seed(seed)
    side = img_size // 16
    feats = ImageFeatures(
        embeddings=torch.randn(images, 256, side, side, generator=g),
        input_sizes=torch.tensor([[img_size, img_size * 3 // 4]] * images),
        original_sizes=torch.tensor([[500, 375]] * images),
        early=torch.randn(images, side, side, encoder_embed_dim(model_type), generator=g),
        references=torch.rand(images, 20, side, side, generator=g), img_size=img_size)
    counts = torch.randint(1, 4, (prompts, ), generator=g)
    labels = (torch.arange(3)[None] < counts[:, None]).long() * 2 - 1
    return feats, PromptBatch(
        points=torch.rand(prompts, 3, 2, generator=g, dtype=torch.float64) * img_size * 0.7,
        labels=labels, image_index=torch.arange(prompts) % images,
        class_index=torch.randint(0, 20, (prompts, ), generator=g))


def count_parameters(backend: torch.nn.Module) -> int:
    """Parameters of the prompt encoder and mask decoder."""
    return sum(p.numel() for m in (backend.prompt_encoder, backend.mask_decoder)
               for p in m.parameters())


def run_one(name: str, model_type: str, images: int, prompts: int, repeats: int,
            device: torch.device) -> dict:
    """Time and memory of one back-end (see the module docstring)."""
    backend = PROMPT_BACKENDS.build(dict(type=name, model_type=model_type, checkpoint=None,
                                         seed=0, device=str(device)))
    feats, batch = bench_inputs(model_type, images, prompts, backend.img_size)
    feats = feats.to(device)

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    backend(feats, batch)   # warm-up
    prep, dec = [], []
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with PeakRSS(0.005) as mem:
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            prepared = backend.prepare(feats)
            sync()
            t1 = time.perf_counter()
            backend.decode(prepared, batch)
            sync()
            prep.append((t1 - t0) / images)
            dec.append(time.perf_counter() - t1)
    peak = (torch.cuda.max_memory_allocated(device) - base) if device.type == 'cuda' \
        else mem.peak - mem.base
    return dict(backend=name, prepare_s_per_image=sum(prep) / len(prep),
                decode_s_per_batch=sum(dec) / len(dec), peak_mib=peak / 2 ** 20,
                parameters=count_parameters(backend))


def main(argv: list[str] | None = None) -> int:
    """Benchmark the back-ends and print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backends', default=None, help='comma-separated (default: all registered)')
    p.add_argument('--model-type', default='vit_b')
    p.add_argument('--images', type=int, default=8)
    p.add_argument('--prompts', type=int, default=16)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--device', default='auto')
    p.add_argument('--json', default=None, help='also write the rows here')
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    names = args.backends.split(',') if args.backends else registered_backends()
    rows = [run_one(n, args.model_type, args.images, args.prompts, args.repeats, device)
            for n in names]
    base = next((r['parameters'] for r in rows if r['backend'] == 'sam'), None)
    print(f'\nPrompt back-ends, {args.model_type} (random weights), device {device}, '
          f'torch threads {torch.get_num_threads()}: {args.images} images, {args.prompts} '
          f'prompt sets, mean of {args.repeats} runs\n')
    print('| back-end | prepare s/image | decode s/batch | peak extra MiB | parameters added |')
    print('|---|---:|---:|---:|---:|')
    for r in rows:
        added = '' if base is None else f'{r["parameters"] - base:,}'
        print(f'| `{r["backend"]}` | {r["prepare_s_per_image"]:.4f} | '
              f'{r["decode_s_per_batch"]:.3f} | {r["peak_mib"]:.0f} | {added} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
