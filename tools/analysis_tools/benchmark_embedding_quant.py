"""int8 vs float16 cached SAM embeddings: the effect on decoded masks (a script, not a test).

The embedding cache stores SAM's image embedding as float16 (default) or as symmetric
per-channel int8 (``sam_embeddings.dtype='int8'``, half the disk; see
``s2c/caches/embedding_store.py``). This script encodes the images of a split once
(float32), derives what each cache format gives back to CPM (float16: the float32
values rounded to float16; int8: ``q * scale`` exactly as the cache reader returns
it), decodes the same prompts on both with the vanilla SAM prompt back-end, and
compares, per prompt and per decoder output (``single``, ``multi_0..2``):

- the IoU of the binary masks in the original frame (logits > 0) of the float16 and
  the int8 embedding: mean, min and 5th percentile;
- the max absolute difference of the low-resolution mask logits (and the largest
  logit, for scale);
- for context, the mean IoU of float32 vs float16 (what the float16 cache already costs).

Prompts, from the instance masks (``SegmentationObject/<name>.png``: 0 background,
255 void, 1..n instances): one positive point at the most interior pixel of each
instance (the maximum of the Euclidean distance to the nearest pixel outside it;
the image border counts as outside), and one box per instance (its tight xyxy box).
It also prints the bytes per image of both formats for this model (with and
without early features) and the relative L2 error of the embeddings.

Examples::

    # the tiny random-weight SAM on the demo data (figures meaningless except as a check)
    python tools/analysis_tools/benchmark_embedding_quant.py --model-type tiny
    # a trained SAM: from a config's `sam` block, or explicitly
    python tools/analysis_tools/benchmark_embedding_quant.py --config CONFIG --data-root DIR
    python tools/analysis_tools/benchmark_embedding_quant.py --model-type vit_h \\
        --checkpoint checkpoints/sam_vit_h_4b8939.pth --data-root data/VOCdevkit/VOC2012
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt
from tqdm import tqdm

from s2c.apis.config import load_config
from s2c.caches.embedding_store import dequantize, entry_file_nbytes, quantize_per_channel
from s2c.caches.embedding_store import save_entry as save_record
from s2c.datasets.paths import dataset_paths
from s2c.registry import PROMPT_BACKENDS
from s2c.sam.encoder import encode_images
from s2c.sam.transforms import original_to_input_coords, postprocess_logits
from s2c.structures import ImageFeatures, PromptBatch
from s2c.utils.device import resolve_device
from s2c.utils.image_io import read_rgb_image

EARLY_CHANNELS = dict(vit_b=768, vit_l=1024, vit_h=1280, tiny=64)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', help="take the SAM from this config's `sam` block")
    p.add_argument('--model-type', default=None, help='vit_b, vit_l, vit_h or tiny '
                   '(default: the config\'s, else tiny)')
    p.add_argument('--checkpoint', default=None, help='SAM checkpoint (default: the config\'s; '
                   'none = random weights)')
    p.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    p.add_argument('--data-root', default='data/demo', help='VOC-layout dataset root with '
                   'SegmentationObject/ (default: the demo dataset)')
    p.add_argument('--split', default='val', help='split name or list file (default: val)')
    p.add_argument('--num-images', type=int, default=None, help='first N images of the split')
    p.add_argument('--device', default='auto')
    p.add_argument('--json', default=None, help='also write the figures (and per prompt) here')
    return p.parse_args(argv)


def instance_prompts(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompts of the instances of an ``(H, W)`` instance map (original frame).

    Returns:
        tuple: ``ids`` ``(K,)``, ``points`` ``(K, 2)`` float64 xy of the most interior
        pixel of each instance, ``boxes`` ``(K, 4)`` float64 xyxy (inclusive pixel indices).
    """
    ids = np.array([i for i in np.unique(instances) if i not in (0, 255)], dtype=np.int64)
    points, boxes = [], []
    for i in ids:
        mask = instances == i
        dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        points.append([x, y])
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return ids, np.asarray(points, np.float64).reshape(-1, 2), \
        np.asarray(boxes, np.float64).reshape(-1, 4)


def as_cached(emb: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(256, h', w')`` float32 -> what each cache format returns (float32 tensors)."""
    q, scale = quantize_per_channel(emb.cpu().numpy(), 0)
    return dict(fp32=emb, fp16=emb.half().float(),
                int8=torch.from_numpy(dequantize(q, scale, 0)).to(emb.device))


def decode(backend, emb: torch.Tensor, input_size, original_size, prompts: PromptBatch
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res logits ``(N, 4, s, s)`` and original-frame masks ``(N, 4, H, W)`` bool."""
    size = torch.tensor([list(input_size)])
    feats = ImageFeatures(embeddings=emb[None], input_sizes=size,
                          original_sizes=torch.tensor([list(original_size)]),
                          img_size=backend.img_size)
    pred = backend.decode(backend.prepare(feats), prompts)
    full = postprocess_logits(pred.logits, input_size, original_size, backend.img_size)
    return pred.logits, full > 0


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``(..., H, W)`` bool masks over the last two dims (1 when both are empty)."""
    inter = (a & b).flatten(-2).sum(-1).double()
    union = (a | b).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def image_rows(backend, image: np.ndarray, instances: np.ndarray) -> tuple[list[dict], dict]:
    """Per-prompt comparisons of one image, and its embedding errors."""
    feats = encode_images(backend, [image])
    emb, input_size = feats.embeddings[0], tuple(feats.input_sizes[0].tolist())
    original_size = image.shape[:2]
    variants = as_cached(emb)
    norm = float(emb.norm())
    errors = {k: float((v - emb).norm()) / max(norm, 1e-12) for k, v in variants.items()
              if k != 'fp32'}
    ids, points, boxes = instance_prompts(instances)
    if not len(ids):
        return [], errors
    k = len(ids)
    img_size = backend.img_size
    pts = torch.as_tensor(original_to_input_coords(points, original_size, img_size))
    bxs = torch.as_tensor(original_to_input_coords(boxes.reshape(-1, 2), original_size,
                                                   img_size)).reshape(-1, 4)
    prompt_sets = {
        'point': PromptBatch(points=pts[:, None, :], labels=torch.ones(k, 1, dtype=torch.long),
                             image_index=torch.zeros(k, dtype=torch.long)),
        'box': PromptBatch(points=torch.zeros(k, 1, 2), labels=-torch.ones(k, 1, dtype=torch.long),
                           image_index=torch.zeros(k, dtype=torch.long), boxes=bxs.float()),
    }
    rows = []
    for kind, prompts in prompt_sets.items():
        out = {name: decode(backend, e, input_size, original_size, prompts)
               for name, e in variants.items()}
        iou = mask_iou(out['fp16'][1], out['int8'][1]).cpu()
        iou_32 = mask_iou(out['fp32'][1], out['fp16'][1]).cpu()
        dlogit = (out['fp16'][0] - out['int8'][0]).abs().flatten(2).amax(-1).cpu()
        top = out['fp16'][0].abs().flatten(2).amax(-1).cpu()
        for j in range(k):
            for c, channel in enumerate(backend.output_names):
                rows.append(dict(prompt=kind, output=channel, instance=int(ids[j]),
                                 iou=float(iou[j, c]), iou_fp32_fp16=float(iou_32[j, c]),
                                 max_abs_dlogit=float(dlogit[j, c]),
                                 max_abs_logit=float(top[j, c])))
    return rows, errors


def table(rows: list[dict], outputs: tuple[str, ...]) -> list[str]:
    head = ('| prompt | output | prompts | IoU int8 vs fp16: mean | min | p5 | '
            'max abs dlogit | max abs logit | IoU fp16 vs fp32: mean |')
    lines = [head, '|' + '---|' * 9]
    for kind in ('point', 'box'):
        for channel in outputs + ('all',):
            r = [x for x in rows if x['prompt'] == kind and channel in (x['output'], 'all')]
            if not r:
                continue
            iou = np.array([x['iou'] for x in r])
            lines.append(
                f'| {kind} | {channel} | {len(r)} | {iou.mean():.4f} | {iou.min():.4f} | '
                f'{np.percentile(iou, 5):.4f} | {max(x["max_abs_dlogit"] for x in r):.4f} | '
                f'{max(x["max_abs_logit"] for x in r):.2f} | '
                f'{np.mean([x["iou_fp32_fp16"] for x in r]):.4f} |')
    return lines


def size_lines(model_type: str, grid: int) -> tuple[list[str], dict]:
    """Bytes per image of both formats (computed, and checked by writing one record)."""
    emb_shape, early_shape = (256, grid, grid), (grid, grid, EARLY_CHANNELS.get(model_type, 64))
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ('float16', 'int8'):
            path = osp.join(tmp, dtype + '.npy')
            written = save_record(path, np.zeros(emb_shape, np.float32), (1, 1), (1, 1),
                                  dtype=dtype)
            assert written == entry_file_nbytes(emb_shape, None, dtype)
            sizes[dtype] = dict(embedding=written,
                                with_early=entry_file_nbytes(emb_shape, early_shape, dtype))
    lines = [f'bytes per image ({model_type}, embedding 256 x {grid} x {grid}): float16 '
             f'{sizes["float16"]["embedding"]:,} B, int8 {sizes["int8"]["embedding"]:,} B '
             f'({sizes["float16"]["embedding"] / sizes["int8"]["embedding"]:.2f}x smaller); with '
             f'early features {sizes["float16"]["with_early"]:,} B vs '
             f'{sizes["int8"]["with_early"]:,} B']
    return lines, sizes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_type, checkpoint = args.model_type, args.checkpoint
    if args.config:
        sam_cfg = load_config(args.config).get('sam') or {}
        model_type = model_type or sam_cfg.get('model_type')
        checkpoint = checkpoint or sam_cfg.get('checkpoint')
    model_type = model_type or 'tiny'
    device = resolve_device(args.device)
    backend = PROMPT_BACKENDS.build(dict(type='sam', model_type=model_type,
                                         checkpoint=checkpoint, seed=args.seed,
                                         with_image_encoder=True, device=str(device)))
    paths = dataset_paths(dict(data_root=args.data_root), split=args.split)
    inst_dir = osp.join(args.data_root, 'SegmentationObject')
    if not osp.isdir(inst_dir):
        print(f'error: {inst_dir} not found: the benchmark needs instance masks '
              '(VOC layout SegmentationObject/<name>.png)', file=sys.stderr)
        return 2
    names = paths.names()[:args.num_images] if args.num_images else paths.names()
    rows, errors = [], []
    for name in tqdm(names, desc='images'):
        image = read_rgb_image(paths.image_path(name))
        instances = np.array(Image.open(osp.join(inst_dir, name + '.png')))
        img_rows, err = image_rows(backend, image, instances)
        rows.extend(dict(r, image=name) for r in img_rows)
        errors.append(err)
    weights = f'random weights (seed {args.seed})' if not checkpoint else checkpoint
    print(f'\nSAM {model_type}, {weights}; {len(names)} images of {args.data_root} '
          f'({args.split}); {sum(r["output"] == "single" for r in rows)} prompts')
    print('\n'.join(table(rows, tuple(backend.output_names))))
    rel = {k: float(np.mean([e[k] for e in errors])) for k in ('fp16', 'int8')}
    print(f'embedding relative L2 error vs float32: float16 {rel["fp16"]:.2e}, '
          f'int8 {rel["int8"]:.2e}')
    grid = backend.img_size // 16
    lines, sizes = size_lines(model_type, grid)
    print('\n'.join(lines))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(model_type=model_type, checkpoint=checkpoint, images=len(names),
                           sizes=sizes, embedding_rel_l2=rel, prompts=rows), f, indent=1)
    return 0


if __name__ == '__main__':
    with torch.no_grad():
        sys.exit(main())
