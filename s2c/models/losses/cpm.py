"""CAM-based prompting module (CPM), S2C section 3.3 / official ``model_s2c.py`` 195-298, 345-357.

Per training batch, without gradients:

1. multi-scale CAMs of the crops (eval mode; :func:`~s2c.cam.inference.batch_multiscale_cams`);
2. peaks per present class (:func:`~s2c.cam.peaks.find_peaks`): all peaks of a
   class form ONE prompt of positive points;
3. a prompt back-end decodes all (image, class) prompts of the batch in one call;
4. the selected mask logits are resampled into the crop frame; a pixel's
   confidence for class c is ``logit x mean CAM_c inside the mask`` (official
   code) or ``stability x mean CAM_c`` (paper); label = argmax over classes
   whose mask covers the pixel, background elsewhere, ignore on padding.

Then, with gradients, ``loss_cpm = CE([CAM_1..CAM_C, 1 - max_c CAM_c], label)``
on the [0, 1] CAMs of the training forward (the official code feeds the
normalised CAMs to the cross-entropy as logits).

Embedding sources:

- ``'cached'`` (default): the SAM embedding of the **original** image comes from
  the embedding cache; peaks are mapped from crop pixels to that image's SAM
  input frame through the geometry record, and the low-res logits are resampled
  into the crop with one ``grid_sample`` (padding -> ignore). SAM's encoder
  never runs during training.
- ``'online'`` (official): the de-normalised crop is resized to ``S x S``
  (non-uniformly, as the official code does) and encoded every step.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from torch import nn

from s2c.cam.inference import IMAGENET_MEAN, IMAGENET_STD, batch_multiscale_cams
from s2c.cam.peaks import find_peaks
from s2c.models.classifiers.cam_classifier import normalize_cams
from s2c.registry import MODELS, PROMPT_BACKENDS
from s2c.sam.backends.base import ImageFeatures, PromptBatch, select_masks

IGNORE = 255
CONFIDENCE_MODES = ('logit_x_meancam', 'stability_x_meancam')


def stability_scores(logits: torch.Tensor, valid: torch.Tensor | None = None,
                     threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """SAM's stability score per mask: ``|logit > t + o| / |logit > t - o|``.

    Args:
        logits: ``(N, H, W)`` mask logits.
        valid: ``(N, H, W)`` bool pixels to count (default all).
        threshold: Mask threshold (SAM: 0).
        offset: Stability offset (SAM: 1).

    Returns:
        torch.Tensor: ``(N,)`` in [0, 1] (1 for an empty mask, as 0/0 is taken as stable).
    """
    if valid is None:
        valid = torch.ones_like(logits, dtype=torch.bool)
    hi = ((logits > threshold + offset) & valid).flatten(1).sum(1).float()
    lo = ((logits > threshold - offset) & valid).flatten(1).sum(1).float()
    return torch.where(lo > 0, hi / lo.clamp(min=1), torch.ones_like(hi))


def compose_cpm_labels(logits: torch.Tensor, cams: torch.Tensor, image_index: torch.Tensor,
                       class_index: torch.Tensor, valid: torch.Tensor, num_classes: int,
                       confidence: str = 'logit_x_meancam') -> torch.Tensor:
    """CPM pseudo-labels from per-prompt mask logits in the crop frame.

    Args:
        logits: ``(N, H, W)`` mask logits of the N prompts (crop frame).
        cams: ``(B, C, H, W)`` normalised multi-scale CAMs.
        image_index: ``(N,)`` image of each prompt.
        class_index: ``(N,)`` 0-based class of each prompt.
        valid: ``(B, H, W)`` bool non-padding pixels.
        num_classes: ``C``.
        confidence: ``'logit_x_meancam'`` (official code: per-pixel logit x
            mean CAM in the mask) or ``'stability_x_meancam'`` (paper: the mask's
            stability score x mean CAM in the mask).

    Returns:
        torch.Tensor: ``(B, H, W)`` long labels: ``0..C-1`` classes, ``C``
        background (no class mask covers the pixel, or its confidence is
        negative), 255 padding.
    """
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f'confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}')
    b, _, h, w = cams.shape
    masks = (logits > 0) & valid[image_index]
    cam_of_prompt = cams[image_index, class_index]  # (N, H, W)
    area = masks.flatten(1).sum(1)
    mean_cam = (cam_of_prompt * masks).flatten(1).sum(1) / area.clamp(min=1)
    if confidence == 'logit_x_meancam':
        conf = logits * mean_cam[:, None, None]
    else:
        stab = stability_scores(logits, valid[image_index])
        conf = (stab * mean_cam)[:, None, None].expand(-1, h, w)
    score = torch.full((b, num_classes, h, w), float('-inf'), device=logits.device)
    conf = torch.where(masks, conf, torch.full_like(conf, float('-inf')))
    # several prompts never share (image, class): one prompt per present class
    score[image_index, class_index] = conf
    best, label = score.max(dim=1)
    label[best < 0] = num_classes
    label[~valid] = IGNORE
    return label


@MODELS.register_module()
class CPM(nn.Module):
    """CAM-based prompting module: SAM pseudo-labels for the CAMs and ``loss_cpm``.

    Args:
        backend: ``PROMPT_BACKENDS`` config (e.g. ``dict(type='sam', model_type='vit_h',
            checkpoint=...)``). Kept outside the classifier's state dict.
        embedding_source: ``'cached'`` (default) or ``'online'`` (official).
        embedding_dir: Embedding cache folder (``'cached'``).
        scales: Multi-scale CAM factors (S2C: 0.5, 1, 1.5, 2).
        peak_threshold: tau (S2C: 0.5).
        min_distance: Minimum peak distance, crop pixels (S2C: 20).
        filter_size: Maximum-filter size of the peak finder (S2C: 3).
        selection: Mask selection policy (official: ``'index2'``).
        confidence: ``'logit_x_meancam'`` (official code, default) or
            ``'stability_x_meancam'`` (paper).
        start_epoch: First (0-based) epoch with CPM (S2C: 2, the third epoch).
        start_iter: Alternatively, first iteration with CPM (overrides ``start_epoch``).
        loss_weight: Weight of ``loss_cpm`` (S2C: 1).
    """

    def __init__(self, backend: dict, embedding_source: str = 'cached',
                 embedding_dir: str | None = None,
                 scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0), peak_threshold: float = 0.5,
                 min_distance: int = 20, filter_size: int = 3, selection: str = 'index2',
                 confidence: str = 'logit_x_meancam', start_epoch: int = 2,
                 start_iter: int | None = None, loss_weight: float = 1.0) -> None:
        super().__init__()
        if embedding_source not in ('cached', 'online'):
            raise ValueError(f"embedding_source must be 'cached' or 'online', "
                             f'got {embedding_source!r}')
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f'confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}')
        if embedding_source == 'cached' and not embedding_dir:
            raise ValueError("embedding_source='cached' needs embedding_dir (build it with "
                             'tools/cache_sam_embeddings.py CONFIG)')
        self.backend_cfg = dict(backend)
        if embedding_source == 'online':
            self.backend_cfg['with_image_encoder'] = True
        self.embedding_source = embedding_source
        self.embedding_dir = embedding_dir
        self.scales = tuple(scales)
        self.peak_kwargs = dict(threshold=peak_threshold, min_distance=min_distance,
                                filter_size=filter_size)
        self.selection = selection
        self.confidence = confidence
        self.start_epoch = start_epoch
        self.start_iter = start_iter
        self.loss_weight = loss_weight
        # Not registered as submodules: SAM stays out of the classifier's state dict
        # and optimizer; built on first use, on the device of the batch.
        self._parts: dict = {}

    # ------------------------------------------------------------------ state
    def is_active(self) -> bool:
        """Whether CPM runs now (from the runner's message hub ``epoch``/``iter``)."""
        hub = MessageHub.get_current_instance()
        if self.start_iter is not None:
            return int(hub.get_info('iter', 0) or 0) >= self.start_iter
        return int(hub.get_info('epoch', 0) or 0) >= self.start_epoch

    def backend(self, device: torch.device):
        """The prompt back-end, built once and moved to ``device``."""
        if 'backend' not in self._parts:
            cfg = dict(self.backend_cfg, device=str(device))
            self._parts['backend'] = PROMPT_BACKENDS.build(cfg)
        backend = self._parts['backend']
        if backend.device != device:
            backend.to(device)
        return backend

    def embedding_cache(self):
        """The embedding cache (``'cached'`` source), opened once.

        Raises:
            ValueError: When the cache was made by another SAM than the back-end's
                (model type, or checkpoint SHA-256 when the back-end has a checkpoint).
        """
        if 'cache' not in self._parts:
            from s2c.sam.build import checkpoint_sha256
            from s2c.sam.embedding_cache import SamEmbeddingCache
            cache = SamEmbeddingCache(self.embedding_dir)
            backend = self._parts.get('backend')
            model_type = getattr(backend, 'model_type', None)
            if model_type is not None:
                ckpt = self.backend_cfg.get('checkpoint')
                cache.check_model(model_type, checkpoint_sha256(ckpt) if ckpt else None)
            self._parts['cache'] = cache
        return self._parts['cache']

    # ------------------------------------------------------------- targets
    @torch.no_grad()
    def make_targets(self, model: nn.Module, inputs: torch.Tensor,
                     data_samples: Sequence[dict], labels: torch.Tensor) -> torch.Tensor:
        """CPM pseudo-labels of a batch.

        Args:
            model: The classifier (switched to eval mode for the CAMs, then restored).
            inputs: ``(B, 3, H, W)`` normalised crops.
            data_samples: Per-image dicts (``name``, ``geometry``, ``valid``).
            labels: ``(B, C)`` multi-hot labels.

        Returns:
            torch.Tensor: ``(B, H, W)`` long: classes ``0..C-1``, ``C`` background, 255 ignore.
        """
        was_training = model.training
        model.eval()
        try:  # the CAM forwards may run under AMP autocast (they return fp32)
            cams = batch_multiscale_cams(model, inputs, labels, self.scales)
        finally:
            model.train(was_training)
        return self.refine(cams, labels, data_samples, inputs)

    @torch.no_grad()
    def refine(self, cams: torch.Tensor, labels: torch.Tensor, data_samples: Sequence[dict],
               inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 2-5 of CPM on given CAMs: peaks -> prompts -> SAM masks -> labels.

        Also used at inference (SAM refinement of pseudo-labels): pass the
        full-resolution CAMs of one image with an identity geometry record.

        Args:
            cams: ``(B, C, H, W)`` normalised CAMs in the current (crop) frame.
            labels: ``(B, C)`` multi-hot labels.
            data_samples: Per-image dicts with ``name`` and ``geometry`` (cached
                source) and optionally ``valid`` (``(H, W)`` bool, default all).
            inputs: ``(B, 3, H, W)`` normalised crops (online source only).

        Returns:
            torch.Tensor: ``(B, H, W)`` long: classes ``0..C-1``, ``C`` background, 255 ignore.

        Note:
            Runs in fp32 even inside an AMP autocast region (``--amp``): fp16 SAM
            outputs are unreliable, and nothing here needs gradients.
        """
        with torch.autocast(device_type=cams.device.type, enabled=False):
            return self._refine(cams.float(), labels.float(), data_samples,
                                None if inputs is None else inputs.float())

    def _refine(self, cams: torch.Tensor, labels: torch.Tensor, data_samples: Sequence[dict],
                inputs: torch.Tensor | None) -> torch.Tensor:
        b, c, h, w = cams.shape
        device = cams.device
        valid = torch.stack([s['valid'] if 'valid' in s else torch.ones(h, w, dtype=torch.bool)
                             for s in data_samples]).to(device)
        # peaks only inside the image: a peak in the crop's padding would map outside
        # the original image (and SAM's input frame)
        img_idx, cls_idx, peaks = self.prompt_peaks(cams * valid[:, None], labels)
        if not peaks:
            return torch.where(valid, c, IGNORE).long()
        backend = self.backend(device)
        if self.embedding_source == 'cached':
            features, points = self._cached_features_and_points(
                data_samples, img_idx, peaks, device)
        else:
            if inputs is None:
                raise ValueError("embedding_source='online' needs the input crops")
            features, points = self._online_features_and_points(inputs, img_idx, peaks, backend)
        num_pts = max(len(p) for p in peaks)
        pts = torch.zeros(len(peaks), num_pts, 2)
        lab = torch.full((len(peaks), num_pts), -1, dtype=torch.long)
        for i, p in enumerate(points):
            pts[i, :len(p)] = torch.as_tensor(p, dtype=torch.float32)
            lab[i, :len(p)] = 1
        prompts = PromptBatch(points=pts, labels=lab, image_index=torch.as_tensor(img_idx),
                              class_index=torch.as_tensor(cls_idx))
        pred = backend.decode(features, prompts)
        logits, _ = select_masks(pred, self.selection)
        image_index = prompts.image_index.to(device)
        logits = self._to_crop(logits.to(device), image_index, data_samples, features, (h, w))
        return compose_cpm_labels(logits, cams, image_index, prompts.class_index.to(device),
                                  valid, c, self.confidence)

    def prompt_peaks(self, cams: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[list[int], list[int], list[np.ndarray]]:
        """Peaks of every present class: image indices, class indices, ``(P, 2)`` (row, col)."""
        cams_np = cams.float().cpu().numpy()
        img_idx, cls_idx, peaks = [], [], []
        for bi, ci in torch.nonzero(labels > 0.5).tolist():
            img_idx.append(bi)
            cls_idx.append(ci)
            peaks.append(find_peaks(cams_np[bi, ci], **self.peak_kwargs))
        return img_idx, cls_idx, peaks

    def _cached_features_and_points(self, data_samples, img_idx, peaks, device):
        cache = self.embedding_cache()
        batch = cache.get_batch([s['name'] for s in data_samples], device)
        img_size = int(batch['embeddings'].shape[-1]) * 16
        features = ImageFeatures(embeddings=batch['embeddings'],
                                 input_sizes=batch['input_size'],
                                 original_sizes=batch['original_size'],
                                 early=batch.get('early'), img_size=img_size)
        points = []
        for bi, p in zip(img_idx, peaks):
            geo = data_samples[bi]['geometry']
            xy = geo.pixel_centres_to_original(p)  # continuous original (x, y)
            in_h, in_w = batch['input_size'][bi].tolist()
            ori_h, ori_w = batch['original_size'][bi].tolist()
            if (ori_h, ori_w) != tuple(geo.ori_shape):
                raise ValueError(f'embedding of {data_samples[bi]["name"]} was computed on a '
                                 f'{ori_h}x{ori_w} image, the dataset image is {geo.ori_shape}; '
                                 'rebuild the cache (tools/cache_sam_embeddings.py --overwrite)')
            # SAM adds 0.5 to reach pixel centres: pass centre - 0.5 in the input frame
            points.append(np.stack([xy[:, 0] * in_w / ori_w, xy[:, 1] * in_h / ori_h], 1) - 0.5)
        return features, points

    def _online_features_and_points(self, inputs, img_idx, peaks, backend):
        h, w = inputs.shape[-2:]
        s = backend.img_size
        mean = torch.as_tensor(IMAGENET_MEAN, device=inputs.device).view(1, 3, 1, 1)
        std = torch.as_tensor(IMAGENET_STD, device=inputs.device).view(1, 3, 1, 1)
        rgb = ((inputs * std + mean) * 255.0).clamp(0, 255)
        rgb = F.interpolate(rgb, size=(s, s), mode='bilinear', align_corners=True)
        features = backend.encode(rgb.to(torch.uint8).float())
        # official: points = (col, row) * S / H (integer pixel indices scaled)
        points = [np.stack([p[:, 1] * s / w, p[:, 0] * s / h], 1) for p in peaks]
        return features, points

    def _to_crop(self, logits: torch.Tensor, image_index: torch.Tensor,
                 data_samples: Sequence[dict], features: ImageFeatures,
                 size: tuple[int, int]) -> torch.Tensor:
        """Resample ``(N, s, s)`` low-res logits of the SAM input frame into the crop frame."""
        if self.embedding_source == 'online':
            return F.interpolate(logits[:, None], size=size, mode='bilinear',
                                 align_corners=False)[:, 0]
        grids = []
        s = features.img_size
        for bi, sample in enumerate(data_samples):
            in_h, in_w = features.input_sizes[bi].tolist()
            ori_h, ori_w = features.original_sizes[bi].tolist()
            # the low-res map spans the padded S x S input square: in original pixels
            grids.append(sample['geometry'].sampling_grid(s * ori_w / in_w, s * ori_h / in_h,
                                                          device=logits.device))
        grid = torch.cat(grids)[image_index]
        return F.grid_sample(logits[:, None], grid, mode='bilinear', padding_mode='border',
                             align_corners=False)[:, 0]

    # ------------------------------------------------------------------ loss
    def loss(self, cam: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
             crop_size: Sequence[int]) -> torch.Tensor:
        """``loss_cpm``: CE between the SAM labels and the [0, 1] CAMs with a background channel.

        Args:
            cam: ``(B, C, h, w)`` raw CAMs of the training forward.
            labels: ``(B, C)`` multi-hot labels.
            targets: ``(B, H, W)`` from :meth:`make_targets`.
            crop_size: ``(H, W)``.
        """
        cams = F.interpolate(normalize_cams(cam), size=tuple(crop_size), mode='bilinear',
                             align_corners=False) * labels[:, :, None, None]
        bg = 1.0 - cams.max(dim=1, keepdim=True).values
        logits = torch.cat([cams, bg], dim=1)
        if not bool((targets != IGNORE).any()):
            return logits.sum() * 0.0
        return self.loss_weight * F.cross_entropy(logits, targets, ignore_index=IGNORE)
