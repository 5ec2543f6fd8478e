"""The PerSAM prompt back-end (ZrrSkywalker/Personalize-SAM ``persam.py``), training-free.

PerSAM personalises SAM from one reference (image, mask): the target
embedding is the mean image embedding inside the reference mask; its cosine
similarity with every embedding cell gives a location prior (the most similar
pixel as a positive point, the least similar as a negative one), guides the
decoder's token-to-image attention, and is added to the decoder's tokens
(:mod:`s2c.sam.decoders.guided`); a two-step cascade then refines the mask.

**Our adaptation to WSSS**: the reference of a prompted (image, class) is the
image's own CAM region of that class: CPM (and SAM refinement) fill
``features.references`` with each class's CAM on the embedding grid, and the
cells above ``reference_threshold`` form the reference mask (the official
code thresholds its bilinearly resized reference mask at 0). The CAM peaks
stay the prompt's points; the location prior is added to them (``'add'``),
replaces them (``'replace'``, the official PerSAM prompt) or is not used
(``'none'``).

Per prompt (``persam.py`` 101-167):

0. points + prior, target-guided attention and target-semantic prompting,
   single-mask output;
1. the same points, step 0's low-res logits as mask input, multimask, the
   output of highest predicted IoU;
2. the same points, the box of step 1's mask (in the original frame, mapped
   to the input frame) and its logits as mask input, multimask, best IoU.

An empty mask at step 1 or 2 keeps the previous step's (the authors' code
crashes on it). Output: one channel, ``persam``, with the predicted IoU of the
step it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from s2c.registry import PROMPT_BACKENDS
from s2c.structures import ImageFeatures, MaskPrediction, PreparedFeatures, PromptBatch

from ..decoders import decode_batched
from ..decoders.guided import TE_ALIAS_MODES
from ..transforms import original_to_input_coords, postprocess_logits
from .sam import SamPromptBackend
from .selection import SAM_OUTPUT_NAMES, select_masks

#: How the location prior joins the CAM peaks.
LOCATION_PRIOR_MODES = ('add', 'replace', 'none')
#: Where the target-guided attention map comes from (:meth:`PerSamPromptBackend.attention_prior`).
ATTN_SIM_FRAMES = ('input_frame', 'official_stretch')


def target_maps(embeddings: torch.Tensor, references: torch.Tensor, threshold: float,
                reduce: str = 'mean') -> tuple[torch.Tensor, torch.Tensor]:
    """Target embedding and cosine-similarity map of every (image, reference).

    Args:
        embeddings: ``(B, C, h, w)`` image embeddings.
        references: ``(B, K, h, w)`` reference maps on the embedding grid.
        threshold: A cell belongs to the reference where its map is above this;
            a reference with no such cell uses its maximum cell.
        reduce: ``'mean'`` (PerSAM, ``persam.py`` 87-90) or ``'mean_max'`` (PerSAM-F,
            ``persam_f.py`` 103-106: the average of the mean and the channel-wise max).

    Returns:
        tuple: ``(B, K, C)`` target embeddings and ``(B, K, h, w)`` cosine
        similarities of their normalised copies with the normalised embedding cells.
    """
    b, k, h, w = references.shape
    region = references > threshold
    top = references.flatten(2).argmax(dim=2)  # (B, K)
    fallback = F.one_hot(top, h * w).view(b, k, h, w).bool()
    region = torch.where(region.flatten(2).any(dim=2)[..., None, None], region, fallback)
    cells = embeddings.flatten(2)  # (B, C, hw)
    weights = region.flatten(2).to(cells.dtype)  # (B, K, hw)
    target = weights @ cells.transpose(1, 2) / weights.sum(dim=2, keepdim=True)
    if reduce == 'mean_max':  # one reference at a time: (B, C, hw) instead of (B, K, C, hw)
        flat = region.flatten(2)
        top = torch.stack([torch.where(flat[:, j, None, :], cells, float('-inf')).amax(dim=2)
                           for j in range(k)], dim=1)
        target = target / 2 + top / 2
    elif reduce != 'mean':
        raise ValueError(f"reduce must be 'mean' or 'mean_max', got {reduce!r}")
    unit = target / target.norm(dim=-1, keepdim=True)
    cells_unit = cells / cells.norm(dim=1, keepdim=True)
    return target, (unit @ cells_unit).view(b, k, h, w)


def similarity_in_original(sim: torch.Tensor, input_sizes: torch.Tensor,
                           original_sizes: torch.Tensor, img_size: int) -> list[torch.Tensor]:
    """Each prompt's ``(h, w)`` similarity map in its image's original frame.

    Official ``persam.py`` 117-121: ``x4`` bilinear, then ``Sam.postprocess_masks``.

    Returns:
        list[torch.Tensor]: ``N`` maps of shape ``(H_n, W_n)``.
    """
    up = F.interpolate(sim[:, None], scale_factor=4, mode='bilinear')
    return [postprocess_logits(up[n:n + 1], input_sizes[n].tolist(), original_sizes[n].tolist(),
                               img_size)[0, 0] for n in range(sim.shape[0])]


def location_prior(sim_original: list[torch.Tensor], original_sizes: torch.Tensor,
                   img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The most and the least similar pixel of each map, as input-frame points.

    Official ``point_selection`` (``persam.py`` 188-205): top-1 and bottom-1 of
    the original-frame map, ``(x, y)`` pixel indices, mapped like SAM's
    ``apply_coords``.

    Returns:
        tuple: ``(N, 2)`` float64 positive and negative ``(x, y)`` points.
    """
    pos, neg = [], []
    for s, size in zip(sim_original, original_sizes.tolist()):
        w = s.shape[1]
        flat = s.flatten()
        for out, idx in ((pos, int(flat.argmax())), (neg, int(flat.argmin()))):
            xy = torch.tensor([[idx % w, idx // w]], dtype=torch.float64)
            out.append(original_to_input_coords(xy, size, img_size)[0])
    return torch.stack(pos), torch.stack(neg)


def mask_boxes(logits: torch.Tensor, input_sizes: torch.Tensor, original_sizes: torch.Tensor,
               img_size: int) -> torch.Tensor:
    """Input-frame boxes of the masks of ``(N, s, s)`` low-res logits (NaN rows: empty).

    Official ``persam.py`` 145-151: the box of the original-frame mask
    ``(x_min, y_min, x_max, y_max)`` (pixel indices), mapped like SAM's ``apply_boxes``.
    """
    boxes = torch.full((logits.shape[0], 4), float('nan'), dtype=torch.float64)
    for n in range(logits.shape[0]):
        size = original_sizes[n].tolist()
        mask = postprocess_logits(logits[n][None, None], input_sizes[n].tolist(), size,
                                  img_size)[0, 0] > 0
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            corners = torch.tensor([[xs.min(), ys.min()], [xs.max(), ys.max()]],
                                   dtype=torch.float64)
            boxes[n] = original_to_input_coords(corners, size, img_size).flatten()
    return boxes


@dataclass
class PromptContext:
    """Per-prompt state of a PerSAM decode: image / class index, ``(N, 2)`` input and original
    sizes, ``(N, h, w)`` similarity maps and their original-frame versions."""

    img: torch.Tensor
    cls: torch.Tensor
    input_sizes: torch.Tensor
    original_sizes: torch.Tensor
    sim: torch.Tensor
    sim_original: list[torch.Tensor]


def _keep_previous(new: tuple[torch.Tensor, torch.Tensor],
                   old: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prompt, the new ``(logits, iou)`` unless its mask is empty."""
    empty = ~(new[0] > 0).flatten(1).any(dim=1)
    return (torch.where(empty[:, None, None], old[0], new[0]),
            torch.where(empty, old[1], new[1]))


@PROMPT_BACKENDS.register_module(name='persam')
class PerSamPromptBackend(SamPromptBackend):
    """PerSAM on vanilla SAM weights, the reference being the prompted class's CAM region.

    See the module docstring for the method and our adaptation.

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official SAM checkpoint (PerSAM adds no weights) or ``None``.
        reference_threshold: Reference cells: reference map above this (CAM: 0.5).
        location_prior: ``'add'`` (default), ``'replace'`` (official) or ``'none'``.
        attn_sim_frame: ``'input_frame'`` (default: the similarity on the
            embedding grid itself, standardised over the cells inside the image)
            or ``'official_stretch'`` (the authors: the original-frame map,
            standardised, stretched over the whole padded grid; misaligned on
            non-square images).
        te_alias: ``'official'`` (default: the authors' in-place addition, see
            :mod:`s2c.sam.decoders.guided`) or ``'clean'``.
        **kwargs: See :class:`~s2c.sam.backends.SamPromptBackend`.

    Raises:
        ValueError: For an unknown option value.
    """

    default_selection = 'persam'

    def __init__(self, model_type: str = 'vit_h', checkpoint: str | None = None, *,
                 reference_threshold: float = 0.5, location_prior: str = 'add',
                 attn_sim_frame: str = 'input_frame', te_alias: str = 'official',
                 **kwargs) -> None:
        for name, value, allowed in (('location_prior', location_prior, LOCATION_PRIOR_MODES),
                                     ('attn_sim_frame', attn_sim_frame, ATTN_SIM_FRAMES),
                                     ('te_alias', te_alias, TE_ALIAS_MODES)):
            if value not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, got {value!r}')
        super().__init__(model_type, checkpoint, **kwargs)
        self.reference_threshold = float(reference_threshold)
        self.location_prior = location_prior
        self.attn_sim_frame = attn_sim_frame
        self.te_alias = te_alias
        self.output_names = ('persam', )
        self.requires = frozenset({'reference'})

    def per_image(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """``target_embedding`` ``(B, K, 256)`` and ``similarity`` ``(B, K, h, w)``."""
        target, sim = target_maps(features.embeddings, features.references,
                                  self.reference_threshold)
        return dict(target_embedding=target, similarity=sim)

    def attention_prior(self, sim: torch.Tensor, sim_original: list[torch.Tensor],
                        input_sizes: torch.Tensor) -> torch.Tensor:
        """``(N, h*w)`` target-guided attention: ``sigmoid`` of the standardised similarity.

        ``'official_stretch'`` (``persam.py`` 129-131): the original-frame map
        standardised (``torch.std``) and resized to the ``h x w`` grid.
        ``'input_frame'``: the grid map standardised by the statistics of the
        cells whose centre lies inside the image.
        """
        n, h, w = sim.shape
        out = []
        for i in range(n):
            if self.attn_sim_frame == 'official_stretch':
                s = sim_original[i]
                s = F.interpolate(((s - s.mean()) / torch.std(s))[None, None], size=(h, w),
                                  mode='bilinear')[0, 0]
            else:
                in_h, in_w = input_sizes[i].tolist()
                cell = self.img_size / h
                rows = int(min(h, max(1, round(in_h / cell))))
                cols = int(min(w, max(1, round(in_w / cell))))
                inside = sim[i, :rows, :cols]
                s = (sim[i] - inside.mean()) / torch.std(inside)
            out.append(torch.sigmoid(s).flatten())
        return torch.stack(out)

    @torch.no_grad()
    def decode(self, prepared: PreparedFeatures, prompts: PromptBatch) -> MaskPrediction:
        """PerSAM's three steps for every prompt (module docstring).

        Raises:
            ValueError: When the prompts have no ``class_index`` (the reference is per class).
        """
        if len(prompts) == 0:
            return self.empty_prediction(prepared)
        ctx = self.prompt_context(prepared, prompts)
        prompts = self._with_prior(prompts, *location_prior(ctx.sim_original,
                                                            ctx.original_sizes, self.img_size))
        guided = replace(prompts, extras=dict(
            attn_sim=self.attention_prior(ctx.sim, ctx.sim_original, ctx.input_sizes),
            target_embedding=prepared.per_image['target_embedding'][ctx.img, ctx.cls]))
        step0 = self.decode_all(prepared, guided, SAM_OUTPUT_NAMES)
        best = select_masks(step0, 'single')
        step1 = self.decode_all(prepared, replace(prompts, mask_inputs=best[0][:, None]),
                                SAM_OUTPUT_NAMES)
        best = _keep_previous(select_masks(step1, 'best_iou'), best)
        logits, iou = self.refine_with_box(prepared, prompts, best, ctx)
        return MaskPrediction(logits=logits[:, None], iou=iou[:, None], names=self.output_names)

    def empty_prediction(self, prepared: PreparedFeatures) -> MaskPrediction:
        """The prediction of no prompt: ``(0, 1, s, s)`` logits."""
        side = prepared.features.embeddings.shape[-1] * 4
        return MaskPrediction(logits=torch.zeros(0, 1, side, side, device=self.device),
                              iou=torch.zeros(0, 1, device=self.device), names=self.output_names)

    def prompt_context(self, prepared: PreparedFeatures, prompts: PromptBatch) -> PromptContext:
        """Each prompt's image, class, frame sizes and similarity maps.

        Raises:
            ValueError: When the prompts have no ``class_index``.
        """
        if prompts.class_index is None:
            raise ValueError(f'{type(self).__name__} needs each prompt\'s class_index (its '
                             'reference map)')
        feats = prepared.features
        img = prompts.image_index.to(self.device)
        cls = prompts.class_index.to(self.device)
        sim = prepared.per_image['similarity'][img, cls]
        input_sizes, original_sizes = feats.input_sizes[img], feats.original_sizes[img]
        return PromptContext(img, cls, input_sizes, original_sizes, sim, similarity_in_original(
            sim, input_sizes, original_sizes, self.img_size))

    def refine_with_box(self, prepared: PreparedFeatures, prompts: PromptBatch,
                        best: tuple[torch.Tensor, torch.Tensor],
                        ctx: PromptContext) -> tuple[torch.Tensor, torch.Tensor]:
        """One cascade step: the points, the box of ``best``'s mask and its logits as mask
        input, multimask, best IoU (an empty result keeps ``best``)."""
        boxes = mask_boxes(best[0], ctx.input_sizes, ctx.original_sizes, self.img_size)
        step = self.decode_all(prepared, replace(prompts, boxes=boxes.float(),
                                                 mask_inputs=best[0][:, None]), SAM_OUTPUT_NAMES)
        return _keep_previous(select_masks(step, 'best_iou'), best)

    def _with_prior(self, prompts: PromptBatch, pos: torch.Tensor,
                    neg: torch.Tensor | None) -> PromptBatch:
        """The prompts' points with the location prior's positive (and negative) point."""
        if self.location_prior == 'none':
            return prompts
        prior = (pos[:, None] if neg is None else torch.stack([pos, neg], dim=1)).to(
            prompts.points.dtype)
        m = prior.shape[1]
        prior_labels = torch.tensor([1, 0][:m]).expand(len(prompts), m)
        if self.location_prior == 'replace':
            return replace(prompts, points=prior, labels=prior_labels.clone())
        # 'add': the prior after each prompt's own points (padding stays at the end)
        n, p = prompts.labels.shape
        points = torch.zeros(n, p + m, 2, dtype=prompts.points.dtype)
        labels = torch.full((n, p + m), -1, dtype=torch.long)
        for i, k in enumerate(prompts.num_points.tolist()):
            keep = prompts.labels[i] != -1
            points[i, :k] = prompts.points[i][keep]
            labels[i, :k] = prompts.labels[i][keep]
            points[i, k:k + m] = prior[i]
            labels[i, k:k + m] = prior_labels[i]
        return replace(prompts, points=points, labels=labels)

    def decode_group(self, prepared: PreparedFeatures, image_pe: torch.Tensor,
                     sparse: torch.Tensor, dense: torch.Tensor, image_index: torch.Tensor,
                     extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's decoder, with PerSAM's target guidance when ``extras`` carry it."""
        guidance = None
        if 'attn_sim' in extras:
            guidance = dict(attn_sim=extras['attn_sim'][:, None, None, :],
                            target_embedding=extras['target_embedding'][:, None, :],
                            te_alias=self.te_alias)
        return decode_batched(self.mask_decoder, prepared.features.embeddings, image_pe,
                              sparse, dense, image_index, guidance)
