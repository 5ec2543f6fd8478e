"""The demo's class-agnostic SAM: the ``tiny`` SAM trained on the demo's own object masks.

The real SAM learnt class-agnostic masks (SA-1B) and knows nothing of the classes. The demo
does the same at toy scale, honestly: :func:`train_demo_sam` reads only the **train** split's
images and instance masks (``SegmentationObject/``; never the class masks, the image-level
labels or the val split) and trains every part of the ``tiny`` SAM (image encoder, prompt
encoder, mask decoder; 256 px) with SAM's promptable objective
(:mod:`s2c.sam.training`). The checkpoint is an official-format SAM state dict, read by the
strict SAM builder like any real checkpoint, with a manifest of how it was made.
"""
from __future__ import annotations

import math
import os.path as osp
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage as ndi
from tqdm import tqdm

from s2c.datasets import read_split
from s2c.sam.build import build_sam
from s2c.sam.decoders.batched import decode_batched
from s2c.sam.training import promptable_loss, sample_box, sample_points
from s2c.sam.transforms import preprocess_image
from s2c.utils import atomic_save_json, atomic_write, load_label_png, read_rgb_image

#: The manifest sits next to the checkpoint with this suffix.
MANIFEST_SUFFIX = '.json'


@dataclass
class InstanceSet:
    """Images and object masks for class-agnostic SAM training (SAM input frame).

    Attributes:
        names: Image ids (one split).
        inputs: ``(M, 3, S, S)`` float32 normalised, zero-padded SAM inputs.
        valid: ``(M, 1, S, S)`` bool, True inside the resized image.
        objects: Per image, ``(n_i, S, S)`` bool object masks (no class information).
    """

    names: list[str]
    inputs: torch.Tensor
    valid: torch.Tensor
    objects: list[torch.Tensor]


def load_instance_set(data_root: str, split: str = 'train', img_size: int = 256,
                      min_pixels: int = 16, background_segments: bool = False,
                      progress: bool = True) -> InstanceSet:
    """Read a split's images and instance masks (``SegmentationObject/<name>.png``).

    Only the image and the object ids are read: no class mask, no image-level label.
    With ``background_segments`` each 8-connected region of the background (id 0, inside
    the image) is a segment too, as SA-1B annotates "stuff" regions as well as objects:
    a SAM trained on objects only never proposes a background segment, and
    segment-everything then leaves the background uncovered.

    Args:
        data_root: Dataset root (VOC layout with ``SegmentationObject``).
        split: List name under ``ImageSets/Segmentation``.
        img_size: SAM input size.
        min_pixels: Objects smaller than this in the input frame are skipped.
        background_segments: Add the background's connected regions as segments.
        progress: Show a progress bar.

    Returns:
        InstanceSet: Images with at least one object (segment).

    Raises:
        FileNotFoundError: Missing list, image or instance mask (names it).
    """
    names_all = read_split(osp.join(data_root, 'ImageSets', 'Segmentation', split + '.txt'))
    names, inputs, valid, objects = [], [], [], []
    for name in tqdm(names_all, desc=f'instances ({split})', unit='img', disable=not progress):
        image = read_rgb_image(osp.join(data_root, 'JPEGImages', name + '.jpg'))
        inst_path = osp.join(data_root, 'SegmentationObject', name + '.png')
        if not osp.isfile(inst_path):
            raise FileNotFoundError(f'instance mask {inst_path} not found; regenerate the demo '
                                    'data (python tools/make_demo_data.py)')
        inst = load_label_png(inst_path)
        x, (h, w) = preprocess_image(image, img_size)
        inst = np.array(Image.fromarray(inst).resize((w, h), Image.NEAREST))
        padded = np.zeros((img_size, img_size), np.uint8)
        padded[:h, :w] = inst
        masks = [padded == k for k in np.unique(padded) if k not in (0, 255)]
        if background_segments:
            regions, count = ndi.label(inst == 0, structure=np.ones((3, 3), bool))
            for k in range(1, count + 1):
                region = np.zeros((img_size, img_size), bool)
                region[:h, :w] = regions == k
                masks.append(region)
        masks = [m for m in masks if m.sum() >= min_pixels]
        if not masks:
            continue
        v = torch.zeros(1, img_size, img_size, dtype=torch.bool)
        v[:, :h, :w] = True
        names.append(name)
        inputs.append(x[0])
        valid.append(v)
        objects.append(torch.from_numpy(np.stack(masks)))
    return InstanceSet(names, torch.stack(inputs), torch.stack(valid), objects)


def _prompt_batch(sam, data: InstanceSet, idx: np.ndarray, rng: np.random.Generator,
                  box_prob: float, max_points: int, objects_per_image: int,
                  device: torch.device):
    """One batch: images (randomly flipped), up to ``objects_per_image`` random objects of
    each with one prompt each, and the prompt embeddings.

    Returns:
        tuple: ``(B, 3, S, S)`` inputs, ``(N, 1, S, S)`` valid masks and targets,
        ``(N,)`` image index of each prompt, sparse / dense prompt embeddings, and whether
        the prompts are single points (ambiguous: multimask loss).
    """
    x = data.inputs[idx].clone()
    valid = data.valid[idx].clone()
    flip = rng.random(len(idx)) < 0.5
    for i in np.flatnonzero(flip):
        x[i], valid[i] = x[i].flip(-1), valid[i].flip(-1)
    targets, image_index = [], []
    for i, j in enumerate(idx):
        objs = data.objects[j]
        chosen = rng.permutation(len(objs))[:objects_per_image]
        for o in sorted(chosen):
            targets.append(objs[o].flip(-1) if flip[i] else objs[o])
            image_index.append(i)
    target = torch.stack(targets)[:, None]
    image_index = torch.tensor(image_index)
    use_box = rng.random() < box_prob
    k = 0 if use_box else int(rng.integers(1, max_points + 1))
    masks_np = target[:, 0].numpy()
    n = len(targets)
    if use_box:
        boxes = torch.from_numpy(np.stack([sample_box(m, rng) for m in masks_np])).to(device)
        points = None
    else:
        coords = torch.from_numpy(np.stack([sample_points(m, k, rng) for m in masks_np]))
        points = (coords.to(device), torch.ones(n, k, dtype=torch.int, device=device))
        boxes = None
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return (x.to(device), valid[image_index].to(device), target.float().to(device),
            image_index.to(device), sparse, dense, k == 1)


def _decode(sam, emb: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
            index: torch.Tensor | None = None, upsample: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits (``(N, 4, S, S)`` in the padded input frame, or the decoder's
    ``(N, 4, S/4, S/4)`` low-res logits with ``upsample=False``) and ``(N, 4)`` IoU
    predictions; prompt ``n`` on image ``index[n]`` (default one prompt per image)."""
    if index is None:
        index = torch.arange(len(emb), device=emb.device)
    low, iou = decode_batched(sam.mask_decoder, emb, sam.prompt_encoder.get_dense_pe(), sparse,
                              dense, index)
    if not upsample:
        return low, iou
    size = sam.image_encoder.img_size
    return F.interpolate(low, size=(size, size), mode='bilinear', align_corners=False), iou


def to_low_res(target: torch.Tensor, valid: torch.Tensor, size: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and valid masks at the decoder's low-res output size (area average: soft
    targets in [0, 1]; a low-res pixel is valid when most of it is).

    Args:
        target: ``(N, 1, S, S)`` float {0, 1} masks (input frame).
        valid: ``(N, 1, S, S)`` bool.
        size: Low-res side (``S / 4``).

    Returns:
        tuple: ``(N, 1, size, size)`` float targets and bool valid masks.
    """
    low_t = F.interpolate(target, size=(size, size), mode='area')
    low_v = F.interpolate(valid.float(), size=(size, size), mode='area') > 0.5
    return low_t * low_v, low_v


def train_demo_sam(data_root: str, out: str, *, steps: int = 500, batch_size: int = 8,
                   lr: float = 5e-4, weight_decay: float = 0.01, box_prob: float = 0.3,
                   max_points: int = 3, objects_per_image: int = 4,
                   background_segments: bool = False, clip_grad: float | None = 1.0,
                   model_type: str = 'tiny', seed: int = 0, device: str = 'cpu',
                   progress: bool = True, data: InstanceSet | None = None) -> dict:
    """Train the ``tiny`` SAM class-agnostically on the train split's objects and save it.

    AdamW with a linear warm-up (5 % of the steps), cosine decay and gradient clipping.
    Each step takes ``batch_size`` random train images (random horizontal flip), encodes
    each once, and decodes one prompt for each of up to ``objects_per_image`` of its
    objects (SAM trains many masks per image) at the decoder's low-res output (``S / 4``:
    64 px for ``tiny``; targets area-averaged, :func:`to_low_res`); one prompt kind per step: a box
    (probability ``box_prob``, jittered) or 1 to ``max_points`` positive points.
    Deterministic for a seed on a given machine.

    From random weights the masks stay empty (training IoU < 0.1) for the first ~150
    steps at lr 5e-4, then the IoU climbs to ~0.7 by step 400; at lr 1e-3 the take-off
    comes ~150 steps later and at 2e-3 (8 objects per image) not within 300 steps; one
    object per image (``objects_per_image=1``) plateaued near 0.35. With
    ``background_segments=True`` (the background regions as extra segments) 500 steps
    reach only IoU 0.33 and the val single-point mIoU falls from 67.2 to 27.3: the
    harder task needs more steps than the demo's budget, so the demo trains on objects.

    Args:
        data_root: Demo dataset root.
        out: Checkpoint path (official SAM keys); ``<out without .pth>.json`` gets the
            manifest (settings, loss curve, wall time).
        steps: Optimiser steps.
        batch_size: Images per step.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        box_prob: Probability of a box-prompt batch.
        max_points: Most positive points of a point prompt.
        objects_per_image: Most objects (one prompt each) per image and step.
        background_segments: Train on the background's connected regions as segments too
            (see :func:`load_instance_set`; ignored when ``data`` is given).
        clip_grad: Gradient-norm clip, or None.
        model_type: SAM model type (:data:`~s2c.sam.build.SAM_MODEL_TYPES`).
        seed: Seed of the weights, the sampling and the flips.
        device: Torch device.
        progress: Show a progress bar with the running loss.
        data: Pre-loaded train instances (default: :func:`load_instance_set` of ``train``).

    Returns:
        dict: The manifest (``losses`` every 10 steps, ``final_iou``, ``wall_s``...).
    """
    start = time.perf_counter()
    dev = torch.device(device)
    data = data if data is not None else load_instance_set(
        data_root, 'train', background_segments=background_segments, progress=progress)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sam = build_sam(model_type, None, device=dev, seed=seed)
    sam.train()
    opt = torch.optim.AdamW(sam.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, t / steps))))
    losses, ious, window = [], [], []
    bar = tqdm(range(steps), desc='demo SAM', unit='step', disable=not progress)
    for step in bar:
        idx = rng.choice(len(data.names), size=batch_size, replace=len(data.names) < batch_size)
        x, valid, target, index, sparse, dense, multimask = _prompt_batch(
            sam, data, idx, rng, box_prob, max_points, objects_per_image, dev)
        emb = sam.image_encoder(x)
        logits, pred_iou = _decode(sam, emb, sparse, dense, index, upsample=False)
        target, valid = to_low_res(target, valid, logits.shape[-1])
        out_losses = promptable_loss(logits, pred_iou, target, valid, multimask)
        loss = out_losses['loss_mask'] + out_losses['loss_iou']
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(sam.parameters(), clip_grad)
        opt.step()
        sched.step()
        window.append((loss.item(), out_losses['iou'].item()))
        if (step + 1) % 10 == 0 or step + 1 == steps:
            losses.append(round(float(np.mean([w[0] for w in window])), 5))
            ious.append(round(float(np.mean([w[1] for w in window])), 4))
            window = []
            bar.set_postfix(loss=f'{losses[-1]:.3f}', iou=f'{ious[-1]:.2f}')
    sam.eval()
    state = {k: v.detach().cpu() for k, v in sam.state_dict().items()}
    with atomic_write(out) as tmp:
        torch.save(state, tmp)
    manifest = dict(kind='demo_sam', model_type=model_type, data_root=osp.abspath(data_root),
                    split='train', images=len(data.names),
                    objects=int(sum(len(o) for o in data.objects)),
                    uses=['JPEGImages', 'SegmentationObject'], steps=steps,
                    batch_size=batch_size, lr=lr, weight_decay=weight_decay, box_prob=box_prob,
                    max_points=max_points, objects_per_image=objects_per_image,
                    background_segments=background_segments,
                    clip_grad=clip_grad, seed=seed, losses_every_10=losses,
                    train_iou_every_10=ious, wall_s=round(time.perf_counter() - start, 1))
    atomic_save_json(manifest_path(out), manifest)
    return manifest


def manifest_path(checkpoint: str) -> str:
    """``<checkpoint without extension>.json``."""
    return osp.splitext(checkpoint)[0] + MANIFEST_SUFFIX


@torch.no_grad()
def single_point_miou(sam, data: InstanceSet, batch_size: int = 32) -> float:
    """Mean IoU (percent) of SAM's single-point masks against the objects of ``data``.

    Each object is prompted with one positive point at its most interior pixel (maximum
    of the distance transform); of the three multimask outputs the one with the highest
    predicted IoU is kept (SamPredictor's choice); IoU is measured in the input frame.
    """
    device = next(sam.parameters()).device
    items = [(i, o) for i, objs in enumerate(data.objects) for o in range(len(objs))]
    ious: list[float] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        idx = [i for i, _ in chunk]
        target = torch.stack([data.objects[i][o] for i, o in chunk])[:, None]
        points = []
        for m in target[:, 0].numpy():
            dist = ndi.distance_transform_edt(m)
            y, x = np.unravel_index(int(dist.argmax()), dist.shape)
            points.append([[x + 0.5, y + 0.5]])
        coords = torch.tensor(points, dtype=torch.float32, device=device)
        labels = torch.ones(len(chunk), 1, dtype=torch.int, device=device)
        sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        emb = sam.image_encoder(data.inputs[idx].to(device))
        logits, pred_iou = _decode(sam, emb, sparse, dense)
        best = pred_iou[:, 1:].argmax(dim=1) + 1
        chosen = logits[torch.arange(len(chunk)), best][:, None]
        valid = data.valid[idx].to(device)
        t = target.to(device)
        pred = (chosen > 0) & valid
        inter = (pred & t).flatten(1).sum(-1).float()
        union = (pred | t).flatten(1).sum(-1).float().clamp_min(1)
        ious += (inter / union).tolist()
    return 100.0 * float(np.mean(ious)) if ious else float('nan')


__all__ = ['InstanceSet', 'load_instance_set', 'manifest_path', 'single_point_miou',
           'train_demo_sam']
