"""Our "segment everything" generator (AMG) on segment-anything's SAM modules.

It produces the same masks, in the same order, as segment-anything 1.0's
``SamAutomaticMaskGenerator`` with the same parameters, but does less work:

- the predicted-IoU filter runs on the decoder output, *before* the logits
  are upsampled (the library upsamples every mask of a batch to the original
  resolution first, through a ``img_size x img_size`` intermediate);
- the surviving logits are upsampled in small chunks (bounded memory);
- the two-way transformer runs with the image-side work shared across the
  prompts of a batch (:mod:`s2c.sam.decoders.one_image`, ``fast_decoder=True``), and
  the mask upscaling runs only for prompts with a mask that passes the
  predicted-IoU filter;
- masks stay boolean tensors (cut to their box until NMS is done): no RLE
  encode / decode round trip.

Every step that decides *which* masks survive is computed the same way as the
library (facts from ``segment_anything/automatic_mask_generator.py`` and
``segment_anything/utils/amg.py``, PyPI 1.0):

1. point grid per crop layer: ``n = int(points_per_side / downscale**layer)``
   points per side at ``(i + 0.5) / n``, x varying fastest;
2. points (float64, crop pixels) mapped to the input frame, decoded
   ``points_per_batch`` at a time with one positive point each and
   ``multimask_output=True`` (3 masks per point, kept point-major);
3. keep ``predicted_iou > pred_iou_thresh`` (skipped when the threshold is 0);
4. logits -> original crop resolution (``Sam.postprocess_masks``); stability
   score = ``count(logit > t + offset) / count(logit > t - offset)`` with
   ``t = model.mask_threshold`` (0), on the full-resolution logits; keep
   ``>= stability_score_thresh`` (skipped when 0);
5. binarise at ``t``; xyxy box (inclusive pixel indices); drop boxes within
   20 px of a crop edge that is not an image edge;
6. per crop: box NMS (``torchvision.ops.batched_nms``, scores = predicted IoU,
   ``box_nms_thresh``); across crops: NMS with scores ``1 / crop area``
   (``crop_nms_thresh``);
7. optional small-region clean-up (``min_mask_region_area > 0``).

The library's batched NMS calls in 1.0 put the category tensor on the CPU
whatever the device; here every tensor stays on the model's device.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torchvision.ops import batched_nms, box_area
from tqdm import tqdm

from s2c.structures import ImageFeatures, PromptBatch

from .amg_geometry import (
    box_near_crop_edge,
    build_all_layer_point_grids,
    generate_crop_boxes,
    masks_to_boxes_xyxy,
    remove_small_regions,
)
from .backends import PromptBackend, select_masks
from .decoders import decode_tokens, predict_iou, predict_mask_logits
from .encoder import early_block_index, encode_batch
from .stability import stability_score
from .transforms import (
    check_rgb_image,
    original_to_input_coords,
    postprocess_logits,
    preprocess_image,
)


@dataclass
class AMGResult:
    """Masks of one image, in output order (original frame).

    Attributes:
        masks: ``(N, H, W)`` bool.
        predicted_iou: ``(N,)`` float32, the decoder's IoU prediction.
        stability_score: ``(N,)`` float32.
        boxes: ``(N, 4)`` int64 xyxy, inclusive pixel indices.
        points: ``(N, 2)`` float64 xy prompt point of each mask.
        crop_boxes: ``(N, 4)`` int64 xyxy crop each mask was decoded in.
    """

    masks: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    crop_boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel count of each mask."""
        return self.masks.reshape(len(self.masks), -1).sum(axis=1, dtype=np.int64) if len(self) \
            else np.zeros(0, dtype=np.int64)

    def to_records(self) -> list[dict[str, Any]]:
        """Records in ``SamAutomaticMaskGenerator.generate`` format (``binary_mask``):
        segmentation, area, bbox (xywh), predicted_iou, point_coords, stability_score,
        crop_box (xywh)."""
        areas = self.areas
        out = []
        for i in range(len(self)):
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            cx0, cy0, cx1, cy1 = (int(v) for v in self.crop_boxes[i])
            out.append(dict(segmentation=self.masks[i], area=int(areas[i]),
                            bbox=[x0, y0, x1 - x0, y1 - y0],
                            predicted_iou=float(self.predicted_iou[i]),
                            point_coords=[self.points[i].tolist()],
                            stability_score=float(self.stability_score[i]),
                            crop_box=[cx0, cy0, cx1 - cx0, cy1 - cy0]))
        return out


class SamAMG:
    """Segment-everything mask generator (same parameters and output as
    segment-anything's ``SamAutomaticMaskGenerator``, less work; see the module docstring).

    Args:
        model: A SAM (e.g. from :func:`s2c.sam.build.build_sam`); its device is used.
        points_per_side: Grid points per side of layer 0 (None: use ``point_grids``).
        points_per_batch: Points decoded per decoder call.
        pred_iou_thresh: Keep masks with predicted IoU ``>`` this (0 disables).
        stability_score_thresh: Keep masks with stability ``>=`` this (0 disables).
        stability_score_offset: Logit offset of the stability score.
        box_nms_thresh: Box IoU threshold of the NMS within a crop.
        crop_n_layers: Extra crop layers (layer i has ``(2**i)**2`` crops).
        crop_nms_thresh: Box IoU threshold of the NMS across crops.
        crop_overlap_ratio: Crop overlap as a fraction of the short side (layer 1).
        crop_n_points_downscale_factor: Points per side shrink by this per layer.
        point_grids: Explicit ``(K, 2)`` grids in ``[0, 1]`` per layer.
        min_mask_region_area: If > 0, fill holes / drop islands smaller than this (px).
        fast_decoder: Decode with :mod:`s2c.sam.decoders.one_image` (image-side work
            shared across prompts, masks upscaled only when they pass the IoU
            filter; equal to the module up to float re-association). False:
            the decoder module's own forward, bit-identical to the library.
        upsample_chunk: Prompts / masks upscaled per step (bounds memory; no
            effect on the output).
        progress: Show a progress bar over the decoder batches.
        backend: Decode the points with this prompt back-end instead of
            ``model``'s decoder (e.g. HQ-SAM, whose authors ship an AMG); ``model``
            still encodes the image, so the back-end must hold the same image
            encoder. One mask per point, chosen by ``selection``.
        selection: The back-end's selection policy (e.g. ``'hq_official'``, what
            HQ-SAM's AMG keeps); it must report a predicted IoU, which the AMG
            filters and ranks by.

    Raises:
        ValueError: Bad grid / batch arguments; a back-end that needs reference
            maps or a different image encoder; ``backend`` without ``selection``.
    """

    def __init__(self, model: Sam, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7,
                 crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 fast_decoder: bool = True, upsample_chunk: int = 16,
                 progress: bool = False, backend: PromptBackend | None = None,
                 selection: str | None = None) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError('give exactly one of points_per_side and point_grids')
        if point_grids is None:
            point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers,
                                                      crop_n_points_downscale_factor)
        if len(point_grids) < crop_n_layers + 1:
            raise ValueError(f'point_grids has {len(point_grids)} grids but crop_n_layers='
                             f'{crop_n_layers} needs {crop_n_layers + 1}')
        if points_per_batch < 1 or upsample_chunk < 1:
            raise ValueError('points_per_batch and upsample_chunk must be >= 1')
        self.model = model
        self.point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.fast_decoder = fast_decoder
        self.upsample_chunk = upsample_chunk
        self.progress = progress
        if backend is not None:
            if selection is None:
                raise ValueError('an AMG back-end needs a selection policy (one mask per point)')
            if 'reference' in backend.requires:
                raise ValueError(f'{type(backend).__name__} needs reference maps, which '
                                 'segment-everything does not have')
        self.backend = backend
        self.selection = selection

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks of ``image`` as library-style records (see :meth:`AMGResult.to_records`)."""
        return self.generate_masks(image).to_records()

    @torch.no_grad()
    def generate_masks(self, image: np.ndarray) -> AMGResult:
        """Segment everything in an ``(H, W, 3)`` uint8 RGB image.

        Returns:
            AMGResult: masks in the library's output order (original frame).

        Raises:
            ValueError: When ``image`` is not ``(H, W, 3)`` uint8.
        """
        check_rgb_image(image)
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers,
                                                     self.crop_overlap_ratio)
        parts = [self._process_crop(image, box, layer, orig_size)
                 for box, layer in zip(crop_boxes, layer_idxs)]
        masks_list = [m for p in parts for m in p.pop('masks_list')]
        data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        if len(crop_boxes) > 1:
            scores = 1 / box_area(data['crop_boxes'])  # prefer masks from smaller crops
            keep = self._nms(data['boxes'], scores.to(self.device), self.crop_nms_thresh)
            data = {k: v[keep] for k, v in data.items()}
            masks_list = [masks_list[i] for i in keep.tolist()]
        data['masks'] = self._paste_masks(masks_list, data['boxes'], orig_size)
        if self.min_mask_region_area > 0:
            data = self._remove_small_regions(data)
        return AMGResult(masks=data['masks'].cpu().numpy(),
                         predicted_iou=data['iou_preds'].float().cpu().numpy(),
                         stability_score=data['stability_score'].float().cpu().numpy(),
                         boxes=data['boxes'].long().cpu().numpy(),
                         points=data['points'].cpu().numpy(),
                         crop_boxes=data['crop_boxes'].long().cpu().numpy())

    def _nms(self, boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> torch.Tensor:
        categories = torch.zeros(len(boxes), device=boxes.device)
        return batched_nms(boxes.float(), scores, categories, iou_threshold=thresh)

    def _paste_masks(self, crops: list[torch.Tensor], boxes: torch.Tensor,
                     orig_size: Sequence[int]) -> torch.Tensor:
        """Paste box-cropped masks into ``(N, H, W)`` bool masks of the original frame."""
        out = torch.zeros((len(crops), int(orig_size[0]), int(orig_size[1])), dtype=torch.bool,
                          device=self.device)
        for i, (crop, (x0, y0, _, _)) in enumerate(zip(crops, boxes.tolist())):
            out[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return out

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int,
                      orig_size: Sequence[int]) -> dict[str, Any]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = crop.shape[:2]
        img_size = self.model.image_encoder.img_size
        x, input_size = preprocess_image(crop, img_size, device=self.device,
                                         pixel_mean=self.model.pixel_mean.flatten().tolist(),
                                         pixel_std=self.model.pixel_std.flatten().tolist())
        if self.backend is None:
            features = self.model.image_encoder(x)
        else:  # the back-end's per-image state, prepared once per crop
            early = early_block_index(self.model) if 'early' in self.backend.requires else None
            emb, early = encode_batch(self.model.image_encoder, x, early_block=early)
            size = torch.tensor([list(input_size)])
            features = self.backend.prepare(ImageFeatures(
                embeddings=emb, input_sizes=size, original_sizes=torch.tensor([list(crop_size)]),
                early=early, img_size=img_size))
        dense_pe = self.model.prompt_encoder.get_dense_pe()
        points_all = self.point_grids[layer] * np.array(crop_size)[None, ::-1]

        batches = []
        starts = range(0, len(points_all), self.points_per_batch)
        for s in tqdm(starts, desc='AMG batches', disable=not self.progress, leave=False):
            points = points_all[s:s + self.points_per_batch]
            batches.append(self._process_batch(points, features, dense_pe, input_size,
                                               crop_box, crop_size, orig_size))
        data = {k: torch.cat([b[k] for b in batches]) for k in batches[0] if k != 'masks_list'}
        masks_list = [m for b in batches for m in b['masks_list']]
        keep = self._nms(data['boxes'], data['iou_preds'], self.box_nms_thresh)
        data = {k: v[keep] for k, v in data.items()}
        data['masks_list'] = [masks_list[i] for i in keep.tolist()]
        shift = torch.as_tensor([x0, y0], device=self.device)
        data['boxes'] = data['boxes'] + shift.repeat(2)
        data['points'] = data['points'] + shift.double()
        data['crop_boxes'] = torch.as_tensor([crop_box], device=self.device).repeat(len(keep), 1)
        return data

    def _process_batch(self, points: np.ndarray, features: torch.Tensor,
                       dense_pe: torch.Tensor, input_size: tuple[int, int],
                       crop_box: list[int], crop_size: Sequence[int],
                       orig_size: Sequence[int]) -> dict[str, Any]:
        model = self.model
        img_size = model.image_encoder.img_size
        # float64 coordinates, like the library (the prompt encoder divides in float64).
        coords = torch.as_tensor(original_to_input_coords(points, crop_size, img_size),
                                 device=self.device)
        if self.backend is not None:
            return self._finish_batch(*self._decode_backend(features, coords), points,
                                      input_size, crop_box, crop_size, orig_size)
        labels = torch.ones(len(points), dtype=torch.int, device=self.device)
        sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels[:, None]),
                                             boxes=None, masks=None)
        pts = torch.as_tensor(np.repeat(points, 3, axis=0), device=self.device)
        if self.fast_decoder:
            low_res, iou, keep = self._decode_fast(features, dense_pe, sparse, dense)
        else:  # the module's own forward (bit-identical to the library)
            low_res, iou = model.mask_decoder(image_embeddings=features, image_pe=dense_pe,
                                              sparse_prompt_embeddings=sparse,
                                              dense_prompt_embeddings=dense,
                                              multimask_output=True)
            low_res, iou = low_res.flatten(0, 1), iou.flatten(0, 1)
            keep = None
            if self.pred_iou_thresh > 0.0:
                keep = iou > self.pred_iou_thresh
                low_res = low_res[keep]
        if keep is not None:
            iou, pts = iou[keep], pts[keep]
        return self._finish_batch(low_res, iou, pts, input_size, crop_box, crop_size,
                                  orig_size)

    def _decode_backend(self, prepared: Any, coords: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per point from the back-end (``selection``), low-res logits and IoUs."""
        n = len(coords)
        prompts = PromptBatch(points=coords[:, None, :].cpu(),
                              labels=torch.ones(n, 1, dtype=torch.long),
                              image_index=torch.zeros(n, dtype=torch.long))
        low_res, iou = select_masks(self.backend.decode(prepared, prompts), self.selection)
        if torch.isnan(iou).any():
            raise ValueError(f'selection {self.selection!r} of {type(self.backend).__name__} '
                             'has no predicted IoU; the AMG filters and ranks masks by it')
        return low_res.to(self.device), iou.to(self.device)

    def _finish_batch(self, low_res: torch.Tensor, iou: torch.Tensor, pts: Any,
                      input_size: tuple[int, int], crop_box: list[int],
                      crop_size: Sequence[int], orig_size: Sequence[int]) -> dict[str, Any]:
        """IoU filter (back-end masks), upsampling, stability, boxes, crop-edge filter."""
        model = self.model
        img_size = model.image_encoder.img_size
        pts = torch.as_tensor(pts, device=self.device)
        if self.backend is not None and self.pred_iou_thresh > 0.0:
            keep = iou > self.pred_iou_thresh
            low_res, iou, pts = low_res[keep], iou[keep], pts[keep]
        masks, stab = [], []
        t = model.mask_threshold
        for s in range(0, len(low_res), self.upsample_chunk):
            logits = postprocess_logits(low_res[s:s + self.upsample_chunk, None].float(),
                                        input_size, crop_size, img_size)[:, 0]
            stab.append(stability_score(logits, t, self.stability_score_offset))
            masks.append(logits > t)
        h, w = int(crop_size[0]), int(crop_size[1])
        rec = dict(masks=torch.cat(masks) if masks else
                   torch.zeros((0, h, w), dtype=torch.bool, device=self.device),
                   iou_preds=iou, points=pts,
                   stability_score=torch.cat(stab) if stab else iou.new_zeros(0))
        if self.stability_score_thresh > 0.0:
            keep = rec['stability_score'] >= self.stability_score_thresh
            rec = {k: v[keep] for k, v in rec.items()}
        rec['boxes'] = masks_to_boxes_xyxy(rec['masks'])
        keep = ~box_near_crop_edge(rec['boxes'], crop_box, [0, 0, orig_size[1], orig_size[0]])
        if not bool(keep.all()):
            rec = {k: v[keep] for k, v in rec.items()}
        # Keep only each mask's box (memory); pasted into the image frame after NMS.
        rec['masks_list'] = [m[y0:y1 + 1, x0:x1 + 1].clone() for m, (x0, y0, x1, y1) in
                             zip(rec.pop('masks'), rec['boxes'].tolist())]
        return rec

    def _decode_fast(self, features: torch.Tensor, dense_pe: torch.Tensor,
                     sparse: torch.Tensor, dense: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Decode a batch with :mod:`s2c.sam.decoders.one_image`; upscale only the masks that
        pass the predicted-IoU filter (before any upsampling).

        Returns:
            tuple: ``low_res (K, h, w)`` logits of the kept masks, ``iou (3B,)``
            of all masks (point-major) and the ``(3B,)`` bool keep mask (None
            when all are kept).
        """
        decoder = self.model.mask_decoder
        hs, keys = decode_tokens(decoder, features, dense_pe, sparse, dense)
        iou = predict_iou(decoder, hs)[:, 1:]  # multimask outputs (tokens 1..3)
        keep = None
        prompts = torch.arange(len(hs), device=hs.device)
        if self.pred_iou_thresh > 0.0:
            keep = (iou > self.pred_iou_thresh)
            prompts = keep.any(dim=1).nonzero()[:, 0]
        embed_hw = tuple(features.shape[-2:])
        chunks = [predict_mask_logits(decoder, hs[idx], keys[idx], embed_hw)[:, 1:]
                  for idx in prompts.split(self.upsample_chunk) if len(idx)]
        low_res = (torch.cat(chunks) if chunks else
                   keys.new_zeros((0, 3, 4 * embed_hw[0], 4 * embed_hw[1])))
        if keep is not None:
            low_res = low_res[keep[prompts]]
            keep = keep.flatten()
        return low_res.flatten(0, 1) if keep is None else low_res, iou.flatten(), keep

    def _remove_small_regions(self, data: dict[str, Any]) -> dict[str, Any]:
        """Small-region clean-up then NMS preferring unchanged masks (library semantics)."""
        if len(data['masks']) == 0:
            return data
        new_masks, scores = [], []
        for mask in data['masks'].cpu().numpy():
            mask, changed_holes = remove_small_regions(mask, self.min_mask_region_area, 'holes')
            mask, changed_islands = remove_small_regions(mask, self.min_mask_region_area,
                                                         'islands')
            new_masks.append(torch.as_tensor(mask, device=self.device))
            scores.append(0.0 if (changed_holes or changed_islands) else 1.0)
        masks = torch.stack(new_masks)
        boxes = masks_to_boxes_xyxy(masks)
        score_t = torch.as_tensor(scores, device=self.device)
        keep = self._nms(boxes, score_t, max(self.box_nms_thresh, self.crop_nms_thresh))
        changed = score_t == 0.0
        data['masks'] = torch.where(changed[:, None, None], masks, data['masks'])
        data['boxes'] = torch.where(changed[:, None], boxes, data['boxes'].to(boxes.dtype))
        return {k: v[keep] for k, v in data.items()}
