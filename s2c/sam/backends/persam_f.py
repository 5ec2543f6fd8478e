"""The PerSAM-F prompt back-end (ZrrSkywalker/Personalize-SAM ``persam_f.py``).

PerSAM-F fine-tunes two scalars per target: the weights ``[1 - w1 - w2, w1, w2]``
of SAM's three multimask logits (init 1/3 each), fitted to the reference mask
with dice + sigmoid focal loss (alpha 0.25, gamma 2), AdamW (lr 1e-3, eps 1e-4,
weight decay 0.01) and a cosine schedule over 1,000 steps (``persam_f.py``
120-150). The weighted mask then goes through the cascade (box + mask input,
twice, best IoU), without PerSAM's target guidance. Its target embedding is the
average of the mean and the channel-wise maximum of the reference cells, and
its location prior is the positive point only.

**Our adaptation to WSSS**: there is no ground-truth mask; the reference is the
image's own CAM region of the prompted class (the embedding-grid CAM resized to
the low-res logit grid, above ``reference_threshold``), so the weights are a
self-fit to the CAM. The fit runs on the low-res logits inside the image
(the authors fit full-resolution logits); the logits are fixed, so they are
decoded once and only the weights are optimised, for all prompts of a batch at
once (each prompt's weights have their own AdamW state, so this equals one fit
per prompt). :meth:`PerSamFPromptBackend.adapt` is the one step that runs with
gradients inside the otherwise gradient-free back-end.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from s2c.registry import PROMPT_BACKENDS
from s2c.structures import ImageFeatures, MaskPrediction, PreparedFeatures, PromptBatch

from .persam import PerSamPromptBackend, location_prior, target_maps
from .selection import SAM_OUTPUT_NAMES


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` over the valid pixels.

    Official ``calculate_dice_loss`` (``persam_f.py`` 279-293) with ``p = sigmoid(logits)``.

    Args:
        logits: ``(N, H, W)``.
        targets: ``(N, H, W)`` in {0, 1}.
        valid: ``(N, H, W)`` bool pixels that count.

    Returns:
        torch.Tensor: ``(N,)``.
    """
    p = logits.sigmoid() * valid
    t = targets * valid
    return 1 - (2 * (p * t).flatten(1).sum(1) + 1) / (p.flatten(1).sum(1)
                                                      + t.flatten(1).sum(1) + 1)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample mean sigmoid focal loss (alpha 0.25, gamma 2) over the valid pixels.

    torchvision's ``sigmoid_focal_loss`` averaged per sample as the official
    ``calculate_sigmoid_focal_loss`` (``persam_f.py`` 296-321) does.

    Returns:
        torch.Tensor: ``(N,)``.
    """
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2, reduction='none') * valid
    return loss.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)


def weighted_logits(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` multimask logits, ``(N, 3)`` weights -> ``(N, H, W)``."""
    return (logits * weights[:, :, None, None]).sum(dim=1)


def fit_mask_weights(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                     steps: int = 1000, lr: float = 1e-3) -> tuple[torch.Tensor, list[float]]:
    """Fit PerSAM-F's weights of the three multimask logits of every prompt.

    Args:
        logits: ``(N, 3, H, W)`` fixed multimask logits.
        targets: ``(N, H, W)`` reference masks in {0, 1}.
        valid: ``(N, H, W)`` bool pixels that count.
        steps: Optimiser steps (official 1,000).
        lr: AdamW learning rate (official 1e-3).

    Returns:
        tuple: ``(N, 3)`` weights ``[1 - w1 - w2, w1, w2]`` and the summed loss
        before each step.
    """
    logits, targets, valid = logits.detach(), targets.detach().float(), valid.detach().float()
    w = torch.full((logits.shape[0], 2), 1 / 3, device=logits.device, requires_grad=True)
    optimizer = torch.optim.AdamW([w], lr=lr, eps=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, int(steps)))
    history = []
    with torch.enable_grad():
        for _ in range(int(steps)):
            weights = torch.cat([1 - w.sum(dim=1, keepdim=True), w], dim=1)
            combined = weighted_logits(logits, weights)
            loss = (dice_loss(combined, targets, valid)
                    + focal_loss(combined, targets, valid)).sum()
            history.append(loss.detach())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    w = w.detach()
    return (torch.cat([1 - w.sum(dim=1, keepdim=True), w], dim=1),
            torch.stack(history).tolist() if history else [])


@PROMPT_BACKENDS.register_module(name='persam_f')
class PerSamFPromptBackend(PerSamPromptBackend):
    """PerSAM-F on vanilla SAM weights, self-fitted to the prompted class's CAM region.

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official SAM checkpoint or ``None``.
        reference_threshold: Reference cells / pixels: CAM above this.
        location_prior: ``'add'`` (default: the CAM peaks + the prior's positive
            point), ``'replace'`` (official: the prior point only) or ``'none'``.
        fit_steps: AdamW steps of the weight fit (official 1,000).
        fit_lr: Its learning rate (official 1e-3).
        **kwargs: See :class:`~s2c.sam.backends.SamPromptBackend`.
    """

    default_selection = 'persam_f'

    def __init__(self, model_type: str = 'vit_h', checkpoint: str | None = None, *,
                 reference_threshold: float = 0.5, location_prior: str = 'add',
                 fit_steps: int = 1000, fit_lr: float = 1e-3, **kwargs) -> None:
        super().__init__(model_type, checkpoint, reference_threshold=reference_threshold,
                         location_prior=location_prior, **kwargs)
        self.fit_steps = int(fit_steps)
        self.fit_lr = float(fit_lr)
        self.output_names = ('persam_f', )

    def per_image(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """``target_embedding`` (mean/max) and ``similarity`` maps, and the ``references``."""
        target, sim = target_maps(features.embeddings, features.references,
                                  self.reference_threshold, reduce='mean_max')
        return dict(target_embedding=target, similarity=sim, references=features.references)

    def adapt(self, logits: torch.Tensor, references: torch.Tensor,
              input_sizes: torch.Tensor) -> torch.Tensor:
        """Fit the weights of ``(N, 3, s, s)`` multimask logits to ``(N, h, w)`` references.

        The references are resized bilinearly to ``s x s`` and thresholded; only
        pixels inside each image's input frame count.

        Returns:
            torch.Tensor: ``(N, 3)`` weights.
        """
        n, _, s, _ = logits.shape
        targets = F.interpolate(references[:, None], size=(s, s), mode='bilinear')[:, 0] \
            > self.reference_threshold
        scale = s / self.img_size
        rows = torch.arange(s, device=logits.device)[None, :, None]
        cols = torch.arange(s, device=logits.device)[None, None, :]
        in_h = (input_sizes[:, 0].to(logits.device).float() * scale).ceil()[:, None, None]
        in_w = (input_sizes[:, 1].to(logits.device).float() * scale).ceil()[:, None, None]
        valid = (rows < in_h) & (cols < in_w)
        weights, _ = fit_mask_weights(logits, targets, valid, self.fit_steps, self.fit_lr)
        return weights

    @torch.no_grad()
    def decode(self, prepared: PreparedFeatures, prompts: PromptBatch) -> MaskPrediction:
        """Multimask logits -> fitted weights -> weighted mask -> two refinement steps.

        Raises:
            ValueError: When the prompts have no ``class_index``.
        """
        if len(prompts) == 0:
            return self.empty_prediction(prepared)
        ctx = self.prompt_context(prepared, prompts)
        pos, _ = location_prior(ctx.sim_original, ctx.original_sizes, self.img_size)
        prompts = self._with_prior(prompts, pos, None)
        multi = self.decode_all(prepared, prompts, SAM_OUTPUT_NAMES)
        weights = self.adapt(multi.logits[:, 1:],
                             prepared.per_image['references'][ctx.img, ctx.cls], ctx.input_sizes)
        best = (weighted_logits(multi.logits[:, 1:], weights), multi.iou[:, 1:].amax(dim=1))
        for _ in range(2):
            best = self.refine_with_box(prepared, prompts, best, ctx)
        return MaskPrediction(logits=best[0][:, None], iou=best[1][:, None],
                              names=self.output_names)
