"""The prompt back-end interface shared by CPM and SAM refinement.

A back-end turns point prompts into mask logits for a batch of images whose
SAM features are already computed (cached or encoded online). One call
decodes every (image, class) prompt of a batch; ``image_index`` says which
image each prompt belongs to (segment-anything's decoder pairs one image
with all prompts). Back-ends differ in what they need per image
(:class:`ImageFeatures`: the embedding, the early ViT block for HQ-SAM /
RobustSAM, a reference for PerSAM) and in the masks they return; every
output channel comes with a name and a predicted IoU (``nan`` when the
variant has none), and a named *selection policy* picks the channel CPM
uses (official S2C: multimask index 2).

Frames: points and logits live in the **SAM input frame** of each image:
the original image resized so that its longest side is ``img_size`` (1024 for
the official models), padded bottom-right to ``img_size x img_size``. The
low-resolution logits (``img_size / 4`` square) cover that whole padded square.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

#: Names of SAM's four mask-token outputs: index 0 is the single-mask output,
#: 1-3 the multimask outputs (``multimask_output=True`` returns these three).
SAM_OUTPUT_NAMES = ('single', 'multi_0', 'multi_1', 'multi_2')

#: Selection policies: name -> what it picks.
SELECTION_POLICIES = {
    'index2': 'multimask output 2 (the coarsest; official S2C model_s2c.py idx_max_sam = 2)',
    'best_iou': 'the multimask output with the highest predicted IoU',
    'single': 'the single-mask output (multimask_output=False)',
}


@dataclass
class ImageFeatures:
    """Per-image SAM features of a batch.

    Attributes:
        embeddings: ``(B, 256, h, w)`` image embeddings (64 x 64 for 1024 px models).
        input_sizes: ``(B, 2)`` long: ``(h_in, w_in)`` of each resized image in the
            SAM input frame (before padding).
        original_sizes: ``(B, 2)`` long: ``(H, W)`` of each image the embedding was
            computed from (original image when cached, the crop when online).
        early: ``(B, h, w, C)`` output of the first global-attention ViT block,
            or ``None`` (needed by HQ-SAM / RobustSAM).
        references: Optional per-image reference data (PerSAM: target embedding
            / location prior from the image's own CAM region).
        img_size: Side of the SAM input frame (1024, or 256 for ``tiny``).
    """

    embeddings: torch.Tensor
    input_sizes: torch.Tensor
    original_sizes: torch.Tensor
    early: torch.Tensor | None = None
    references: list | None = None
    img_size: int = 1024


@dataclass
class PromptBatch:
    """Point prompts of several images, in the SAM input frame.

    Attributes:
        points: ``(N, P, 2)`` float ``(x, y)`` pixel coordinates in the SAM input
            frame (SAM adds 0.5 to reach pixel centres); rows are padded to ``P``.
        labels: ``(N, P)`` long: 1 positive, 0 negative, -1 padding.
        image_index: ``(N,)`` long: the image of each prompt (index into ``ImageFeatures``).
        class_index: ``(N,)`` long: the class each prompt is for (informational).
    """

    points: torch.Tensor
    labels: torch.Tensor
    image_index: torch.Tensor
    class_index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass
class MaskPrediction:
    """All output channels of a back-end for ``N`` prompts.

    Attributes:
        logits: ``(N, M, s, s)`` low-resolution mask logits over the padded SAM
            input frame (``s = img_size / 4``).
        iou: ``(N, M)`` predicted IoU of each channel (``nan`` if not predicted).
        names: ``M`` channel names (e.g. :data:`SAM_OUTPUT_NAMES`).
    """

    logits: torch.Tensor
    iou: torch.Tensor
    names: tuple[str, ...] = field(default_factory=tuple)


def select_masks(pred: MaskPrediction, policy: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one channel per prompt.

    Args:
        pred: Back-end output.
        policy: A key of :data:`SELECTION_POLICIES` or a channel name.

    Returns:
        tuple: ``(N, s, s)`` logits and ``(N,)`` predicted IoUs.

    Raises:
        ValueError: For an unknown policy or one the back-end cannot serve.
    """
    names = list(pred.names)
    n = pred.logits.shape[0]
    rows = torch.arange(n, device=pred.logits.device)
    if policy in names:
        idx = torch.full((n,), names.index(policy), dtype=torch.long, device=rows.device)
    elif policy == 'index2' and 'multi_2' in names:
        return select_masks(pred, 'multi_2')
    elif policy == 'single' and 'single' in names:
        return select_masks(pred, 'single')
    elif policy == 'best_iou':
        multi = [i for i, name in enumerate(names) if name.startswith('multi_')] or \
            list(range(len(names)))
        sub = pred.iou[:, multi].nan_to_num(-1.0)
        idx = torch.tensor(multi, device=rows.device)[sub.argmax(dim=1)]
    else:
        raise ValueError(f'selection policy {policy!r} is not available for outputs {names}; '
                         f'policies: {sorted(SELECTION_POLICIES)} or a channel name')
    return pred.logits[rows, idx], pred.iou[rows, idx]


class PromptBackend(nn.Module):
    """Base class of registered prompt back-ends (``PROMPT_BACKENDS``).

    Subclasses set :attr:`needs_early_features` / :attr:`needs_reference`
    and implement :meth:`decode`. A back-end owns its SAM modules (prompt
    encoder, mask decoder and, for the online mode, the image encoder).
    """

    needs_early_features: bool = False
    needs_reference: bool = False
    img_size: int = 1024

    def decode(self, features: ImageFeatures, prompts: PromptBatch) -> MaskPrediction:
        """Decode all prompts of a batch in one call."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """Online mode: encode ``(B, 3, img_size, img_size)`` SAM-normalised images."""
        raise NotImplementedError(f'{type(self).__name__} has no image encoder; build it with '
                                  'with_image_encoder=True for the online embedding source')
