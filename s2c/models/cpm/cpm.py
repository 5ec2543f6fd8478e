"""CAM-based prompting module (CPM), S2C section 3.3 / official ``model_s2c.py`` 195-298, 345-357.

Per training batch, without gradients:

1. multi-scale CAMs of the crops (eval mode; :func:`~s2c.cam.batch_multiscale_cams`),
   in ``cam_precision`` (default ``'auto'``: fp16 under ``--amp``'s fp16 autocast,
   fp32 under bf16, as measured by ``tools/analysis_tools/study_cam_precision.py``);
   the scale-1 CAM continues
   from the stem the training forward computes (``share_stem``, frozen BN only);
2. peaks per present class (:func:`~s2c.models.cpm.prompts.peak_prompts`): all
   peaks of a class form ONE prompt of positive points, mapped into the SAM
   input frame (:mod:`s2c.models.cpm.frames`);
3. the prompt back-end prepares the batch's features once and decodes all
   (image, class) prompts in one call; a selection policy picks one channel;
4. the selected logits are resampled into the crop frame and composed into a
   label (:func:`~s2c.models.cpm.labels.compose_cpm_labels`).

Then, with gradients, ``loss_cpm`` (:class:`~s2c.models.losses.CPMLoss`).

Embedding sources:

- ``'cached'`` (default): the SAM embedding of the **original** image comes from
  the embedding cache (:class:`~s2c.caches.EmbeddingStore`); prompts and
  logits go through the crop's geometry record. SAM's encoder never runs
  during training.
- ``'online'`` (official): the crop is resized to ``S x S`` (non-uniformly, as
  the official code does) and encoded every step by the back-end.

Official-code behaviours are options next to our defaults: ``peak_rule``
(:mod:`s2c.cam.peaks`), ``mask_chain`` (SAM's output chain) and
``ignore_padding`` (see the class arguments).

Everything that can be wrong with the set-up is checked when the module is
built (before iteration 1): the back-end type and its arguments, the
selection policy against the back-end's ``output_names``, and for the cached
source that the cache exists and fits the back-end (``encoder_id``, input
size, early features when required).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from mmengine.logging import MessageHub
from torch import nn

from s2c.caches.embedding_store import EmbeddingStore
from s2c.cam.inference import (
    CAM_PRECISIONS,
    DEFAULT_CAM_PRECISION,
    S2C_SCALES,
    batch_multiscale_cams,
    cam_autocast_state,
)
from s2c.cam.peaks import PEAK_RULES
from s2c.registry import MODELS, PROMPT_BACKENDS
from s2c.sam.backends import PromptBackend, check_policy, select_masks
from s2c.structures import IGNORE_INDEX

from ..backbones.resnet38d import StemFeatures
from ..losses.cpm_loss import CPMLoss
from .frames import CachedFrames, OnlineFrames
from .labels import CONFIDENCE_MODES, compose_cpm_labels
from .prompts import peak_prompts, points_to_prompts

EMBEDDING_SOURCES = ('cached', 'online')
#: How a prompt's mask reaches the crop: threshold the logits resampled into the
#: crop (``'direct'``), or SAM's own output chain (``'sam_postprocess'``, official).
MASK_CHAINS = ('direct', 'sam_postprocess')


def build_backend(cfg: dict) -> PromptBackend:
    """Build a prompt back-end from its config, naming the registered types on a typo.

    Raises:
        KeyError: No or an unknown ``type`` (lists the registered back-ends).
        ValueError: An argument the back-end does not take (names it).
    """
    cfg = dict(cfg)
    PROMPT_BACKENDS.import_from_location()  # registers s2c's back-ends
    if not isinstance(cfg.get('type'), str) or PROMPT_BACKENDS.get(cfg['type']) is None:
        raise KeyError(f'unknown prompt back-end {cfg.get("type")!r} (model.cpm.backend.type); '
                       f'registered: {sorted(PROMPT_BACKENDS.module_dict)}')
    try:
        backend = PROMPT_BACKENDS.build(cfg)
    except TypeError as e:
        raise ValueError(f'prompt back-end {cfg["type"]!r} (model.cpm.backend): {e}') from e
    backend.check_requirements()
    return backend


@MODELS.register_module()
class CPM(nn.Module):
    """CAM-based prompting module: SAM pseudo-labels for the CAMs and ``loss_cpm``.

    The back-end and the embedding cache are kept outside the module tree: SAM
    stays out of the classifier's state dict, its optimizer and DDP; the
    back-end follows the batch's device at first use.

    Args:
        backend: ``PROMPT_BACKENDS`` config of the SAM decoder, complete and
            explicit (e.g. ``dict(type='sam', model_type='vit_h',
            checkpoint='checkpoints/sam_vit_h_4b8939.pth')``); nothing is copied
            from the config's ``sam`` block. Built on ``device`` (default CPU) and
            moved to the device of the batch at first use.
        embedding_source: ``'cached'`` (default) or ``'online'`` (official).
        embedding_dir: Embedding cache folder (``'cached'``), e.g.
            ``<data_root>/sam_embeddings/vit_h``.
        scales: Multi-scale CAM factors (S2C: 0.5, 1, 1.5, 2).
        peak_threshold: tau (S2C: 0.5).
        min_distance: Minimum peak distance, crop pixels (S2C: 20).
        filter_size: Maximum-filter size of the peak finder (S2C: 3).
        peak_rule: ``'snapped'`` (default: peaks at the CAM maxima, only the
            global maximum's duplicates dropped) or ``'official'`` (the official
            point lists); see :mod:`s2c.cam.peaks`.
        mask_chain: ``'direct'`` (default: a mask is its logits resampled
            bilinearly into the crop, ``> 0``) or ``'sam_postprocess'`` (official
            ``model_s2c.py`` 281: ``Sam.postprocess_masks`` - upsample to the
            ``S x S`` input, cut the padding, resize to the image - then ``> 0``).
            The confidence is the logits resampled directly in both.
        ignore_padding: Default True: padded crop pixels are ignored by
            ``loss_cpm``, take no part in a mask's mean CAM and hold no peak.
            False (official): the crop is used whole, padding included.
        selection: Mask selection policy (official: ``'index2'``).
        confidence: ``'logit_x_meancam'`` (official code, default) or
            ``'stability_x_meancam'`` (paper).
        start_epoch: First (0-based) epoch with CPM (S2C: 2, the third epoch).
        start_iter: Alternatively, first iteration with CPM (overrides ``start_epoch``).
        loss_weight: Weight of ``loss_cpm`` (S2C: 1).
        cam_precision: Precision of the no-grad multi-scale CAM forwards
            (:data:`~s2c.cam.inference.CAM_PRECISIONS`): ``'auto'`` (default: follow
            ``--amp``'s autocast when it is fp16, run fp32 under bf16 autocast; measured
            with ``tools/analysis_tools/study_cam_precision.py`` on the demo models, fp16
            autocast kept 96.6-98.5 % of the peak sets and >= 99.8 % of the CPM label
            pixels of fp32, bf16 only 78-84 % and 98.6-99.3 %), ``'fp32'``, ``'amp'``
            (follow any autocast), ``'bf16'``, ``'fp16'``. A non-finite
            reduced-precision CAM is recomputed in fp32.
        share_stem: Reuse the training forward's stem (the backbone up to its
            first dropout, :meth:`~s2c.models.backbones.ResNet38d.forward_stem`)
            for the scale-1 CAM: bit-identical results, one partial forward less per
            step. Valid only with frozen BatchNorm, no active dropout in the stem
            and CAMs in the training forward's precision. ``None`` (default): share
            when valid, else compute the CAM separately (logged once); ``True``:
            share or raise; ``False``: never.

    Raises:
        ValueError: Bad source / confidence / policy / ``cam_precision``, no
            ``embedding_dir``, or a cache that does not fit the back-end.
        KeyError / TypeError: Unknown back-end type or argument.
        FileNotFoundError: The embedding cache does not exist (names the tool).
    """

    def __init__(self, backend: dict, embedding_source: str = 'cached',
                 embedding_dir: str | None = None, scales: Sequence[float] = S2C_SCALES,
                 peak_threshold: float = 0.5, min_distance: int = 20, filter_size: int = 3,
                 peak_rule: str = 'snapped', mask_chain: str = 'direct',
                 ignore_padding: bool = True, selection: str = 'index2',
                 confidence: str = 'logit_x_meancam', start_epoch: int = 2,
                 start_iter: int | None = None, loss_weight: float = 1.0,
                 cam_precision: str = DEFAULT_CAM_PRECISION,
                 share_stem: bool | None = None) -> None:
        super().__init__()
        if cam_precision not in CAM_PRECISIONS:
            raise ValueError(f'cam_precision must be one of {CAM_PRECISIONS}, '
                             f'got {cam_precision!r}')
        if share_stem not in (None, True, False):
            raise ValueError(f'share_stem must be None (auto), True or False, got {share_stem!r}')
        if embedding_source not in EMBEDDING_SOURCES:
            raise ValueError(f'embedding_source must be one of {EMBEDDING_SOURCES}, '
                             f'got {embedding_source!r}')
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f'confidence must be one of {CONFIDENCE_MODES}, got {confidence!r}')
        if peak_rule not in PEAK_RULES:
            raise ValueError(f'peak_rule must be one of {PEAK_RULES}, got {peak_rule!r}')
        if mask_chain not in MASK_CHAINS:
            raise ValueError(f'mask_chain must be one of {MASK_CHAINS}, got {mask_chain!r}')
        if embedding_source == 'cached' and not embedding_dir:
            raise ValueError("embedding_source='cached' needs embedding_dir (build it with "
                             'tools/cache_sam_embeddings.py CONFIG)')
        backend_cfg = dict(backend)
        backend_cfg.setdefault('device', 'cpu')  # moved to the batch's device at first use
        if embedding_source == 'online':
            backend_cfg['with_image_encoder'] = True
        prompt_backend = build_backend(backend_cfg)
        check_policy(selection, prompt_backend.output_names)
        store = None
        if embedding_source == 'cached':
            store = EmbeddingStore(embedding_dir)
            store.check_backend(prompt_backend)
        self.embedding_source = embedding_source
        self.embedding_dir = embedding_dir
        self.scales = tuple(scales)
        self.peak_kwargs = dict(threshold=peak_threshold, min_distance=min_distance,
                                filter_size=filter_size, rule=peak_rule)
        self.mask_chain = mask_chain
        self.ignore_padding = bool(ignore_padding)
        self.selection = selection
        self.confidence = confidence
        self.start_epoch = start_epoch
        self.start_iter = start_iter
        self.loss_cpm = CPMLoss(loss_weight)
        self.cam_precision = cam_precision
        self.share_stem = share_stem
        # Not registered as submodules (see the class docstring).
        self._parts = dict(backend=prompt_backend, store=store)

    # ------------------------------------------------------------------ state
    def is_active(self) -> bool:
        """Whether CPM runs now (from the runner's message hub ``epoch``/``iter``)."""
        hub = MessageHub.get_current_instance()
        if self.start_iter is not None:
            return int(hub.get_info('iter', 0) or 0) >= self.start_iter
        return int(hub.get_info('epoch', 0) or 0) >= self.start_epoch

    @property
    def store(self) -> EmbeddingStore | None:
        """The embedding cache (``'cached'`` source), opened and checked at build time."""
        return self._parts['store']

    def backend(self, device: torch.device | None = None) -> PromptBackend:
        """The prompt back-end, moved to ``device`` when given."""
        backend = self._parts['backend']
        if device is not None and backend.device != torch.device(device):
            backend.to(device)
        return backend

    # ------------------------------------------------------------- targets
    def stem_precision_problem(self, device_type: str) -> str | None:
        """Why the CAM forwards cannot reuse the training forward's stem, precision-wise.

        The stem is computed in the training forward's precision (the autocast
        state active now); the CAM forwards run in :attr:`cam_precision`. They must
        agree (e.g. under ``--amp``: ``cam_precision='amp'``).

        Returns:
            str | None: The reason, or ``None`` when they agree.
        """
        cam = cam_autocast_state(self.cam_precision, device_type)
        train = cam_autocast_state('amp', device_type)
        if cam == train:
            return None

        def name(state: tuple[bool, torch.dtype]) -> str:
            return str(state[1]).replace('torch.', '') + (' autocast' if state[0] else '')

        return (f"CPM's CAM forwards run in {name(cam)} (cam_precision="
                f"{self.cam_precision!r}) but the training forward in {name(train)}")

    @torch.no_grad()
    def make_targets(self, model: nn.Module, inputs: torch.Tensor,
                     data_samples: Sequence[dict], labels: torch.Tensor,
                     stem: StemFeatures | None = None) -> torch.Tensor:
        """CPM pseudo-labels of a batch.

        Args:
            model: The classifier (switched to eval mode for the CAMs, then restored).
            inputs: ``(B, 3, H, W)`` normalised crops.
            data_samples: Per-image dicts (``name``, ``geometry``, ``valid``).
            labels: ``(B, C)`` multi-hot labels.
            stem: The training forward's detached stem of ``inputs``
                (``model.backbone.forward_stem(inputs).detach()``), continued by
                ``model.extract(inputs, stem=stem)`` for the scale-1 CAM; ``None``:
                the scale-1 CAM runs the whole network.

        Returns:
            torch.Tensor: ``(B, H, W)`` long: classes ``0..C-1``, ``C`` background, 255 ignore.

        Raises:
            ValueError: A ``stem`` computed in another precision than the CAM forwards.
        """
        scale_one_cam = None
        if stem is not None:
            problem = self.stem_precision_problem(inputs.device.type)
            if problem:
                raise ValueError(f'cannot reuse the training stem: {problem}')

            def scale_one_cam() -> torch.Tensor:
                return model.extract(inputs, stem=stem)['cam']

        was_training = model.training
        model.eval()
        try:  # fp32 CAMs, whatever precision the forwards ran in
            cams = batch_multiscale_cams(model, inputs, labels, self.scales,
                                         precision=self.cam_precision,
                                         scale_one_cam=scale_one_cam)
        finally:
            model.train(was_training)
        return self.refine(cams, labels, data_samples, inputs)

    @torch.no_grad()
    def refine(self, cams: torch.Tensor, labels: torch.Tensor, data_samples: Sequence[dict],
               inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Steps 2-4 of CPM on given CAMs: peaks -> prompts -> SAM masks -> labels.

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
        valid = torch.ones(b, h, w, dtype=torch.bool, device=device)
        if self.ignore_padding:
            for i, sample in enumerate(data_samples):
                if 'valid' in sample:
                    valid[i] = sample['valid'].to(device)
        # no peak in ignored padding: it would map outside the image (and SAM's frame)
        cams_in_image = cams * valid[:, None]
        img_idx, cls_idx, peaks = self.prompt_peaks(cams_in_image, labels)
        if not peaks:
            return torch.where(valid, c, IGNORE_INDEX).long()
        backend = self.backend(device)
        if self.embedding_source == 'cached':
            features = self.store.get_batch([s['name'] for s in data_samples], device,
                                            with_early='early' in backend.requires)
            frames = CachedFrames([s['geometry'] for s in data_samples], features, (h, w),
                                  [s['name'] for s in data_samples])
        else:
            if inputs is None:
                raise ValueError("embedding_source='online' needs the input crops")
            frames = OnlineFrames((h, w), backend.img_size)
            features = backend.encode(frames.sam_input(inputs))
        if 'reference' in backend.requires:
            features = replace(features, references=frames.cams_to_grid(
                cams_in_image, features.embeddings.shape[-2:]))
        prompts = points_to_prompts(frames.points(img_idx, peaks), img_idx, cls_idx)
        pred = backend.decode(backend.prepare(features), prompts)
        logits, _ = select_masks(pred, self.selection)
        image_index = prompts.image_index.to(device)
        logits = logits.to(device)
        masks = None
        if self.mask_chain == 'sam_postprocess':
            masks = frames.masks_to_crop(logits, image_index)
        return compose_cpm_labels(frames.logits_to_crop(logits, image_index), cams, image_index,
                                  prompts.class_index.to(device), valid, c, self.confidence,
                                  masks=masks)

    def prompt_peaks(self, cams: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[list[int], list[int], list[np.ndarray]]:
        """Peaks of every present class (see :func:`~s2c.models.cpm.prompts.peak_prompts`)."""
        return peak_prompts(cams, labels, **self.peak_kwargs)

    # ------------------------------------------------------------------ loss
    def loss(self, cam: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
             crop_size: Sequence[int]) -> torch.Tensor:
        """``loss_cpm`` (see :class:`~s2c.models.losses.CPMLoss`).

        Args:
            cam: ``(B, C, h, w)`` raw CAMs of the training forward.
            labels: ``(B, C)`` multi-hot labels.
            targets: ``(B, H, W)`` from :meth:`make_targets`.
            crop_size: ``(H, W)``.
        """
        return self.loss_cpm(cam, labels, targets, crop_size)
