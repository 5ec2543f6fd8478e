"""SAM-segment contrasting (SSC), S2C section 3.2 / official ``model_s2c.py`` lines 327-343.

Every pixel feature is pulled towards the prototype of the SAM segment it
lies in and pushed from the prototypes of the other segments of the same
image::

    f_p     = normalize(upsample(feat)_p)                  (B, D, H, W) -> unit vectors
    proto_k = normalize(mean_{p in segment k} stopgrad(f_p))
    loss    = mean_p CE(T * [<f_p, proto_1>, ..., <f_p, proto_K>], seg(p))

over the covered pixels (SE map > 0) of images with at least
``min_segments`` segments. Prototypes are means of **detached** features
(official ``torch_scatter.scatter_mean(feat.detach(), ...)``), so no gradient
reaches them; ``T`` multiplies the cosine (official ``pred_ssc * self.T``, T = 1).

``negatives='official'`` reproduces the official softmax: the mean of the
*uncovered* pixels (SE id 0) is a prototype, and every id up to the batch's
largest that has no pixel in this crop (a segment of this image outside the
crop, or an id only other images have) adds a logit of 0 (zero prototype).
That needs the official numbering, over the whole image before the crop:
put ``RenumberSegmentsBeforeCrop`` before ``RandomCrop`` in the pipeline (the
loss checks ``data_samples[i]['se_ids'] == 'image'``). As in the official
code there is no ``min_segments`` guard in this mode. ``'segments'``
(default) uses exactly the segments of the pixel's own crop, as the paper
describes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s2c.registry import MODELS


def segment_prototypes(feat: torch.Tensor, se_map: torch.Tensor) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """Per-image segment means, padded to the batch's largest id.

    Args:
        feat: ``(B, D, H, W)`` features (used as given; detach before if needed).
        se_map: ``(B, H, W)`` int64 ids ``0..K_b`` (0 = uncovered).

    Returns:
        tuple: ``protos`` ``(B, K + 1, D)`` means (slot 0 = uncovered pixels,
        zero where an id has no pixel) and ``counts`` ``(B, K + 1)`` pixel counts,
        ``K = se_map.max()``. Vectorised with ``index_add_`` (no loop over segments).
    """
    b, d = feat.shape[:2]
    k = int(se_map.max().item()) if se_map.numel() else 0
    slots = k + 1
    index = (se_map + slots * torch.arange(b, device=se_map.device).view(b, 1, 1)).flatten()
    flat = feat.permute(0, 2, 3, 1).reshape(-1, d)
    sums = torch.zeros(b * slots, d, dtype=feat.dtype, device=feat.device)
    sums.index_add_(0, index, flat)
    counts = torch.bincount(index, minlength=b * slots).to(feat.dtype)
    protos = sums / counts.clamp(min=1).unsqueeze(1)
    return protos.view(b, slots, d), counts.view(b, slots)


@MODELS.register_module()
class SSCLoss(nn.Module):
    """SAM-segment contrasting loss (``loss_ssc``).

    Args:
        temperature: Multiplier of the cosine logits (official ``T`` = 1).
        loss_weight: Loss weight (S2C: 1).
        min_segments: Images with fewer segments in the crop contribute nothing
            (``'segments'`` mode only).
        negatives: ``'segments'`` (paper, default) or ``'official'`` (see module doc).
    """

    def __init__(self, temperature: float = 1.0, loss_weight: float = 1.0,
                 min_segments: int = 2, negatives: str = 'segments') -> None:
        super().__init__()
        if negatives not in ('segments', 'official'):
            raise ValueError(f"negatives must be 'segments' or 'official', got {negatives!r}")
        self.temperature = temperature
        self.loss_weight = loss_weight
        self.min_segments = min_segments
        self.negatives = negatives

    def forward(self, feat: torch.Tensor, data_samples: Sequence[dict] | torch.Tensor,
                crop_size: Sequence[int] | None = None) -> torch.Tensor:
        """Compute the loss.

        Args:
            feat: ``(B, D, h, w)`` features (``feat`` after fc8 + ReLU).
            data_samples: Per-image dicts holding ``se_map`` ``(H, W)`` int64
                (0 = uncovered/padding, 1..K), or the stacked ``(B, H, W)`` maps.
            crop_size: ``(H, W)``; default the SE maps' size.

        Returns:
            torch.Tensor: Scalar loss (0 with a graph when nothing qualifies).

        Raises:
            KeyError: When a data sample has no ``se_map`` (SE maps not loaded).
            ValueError: ``negatives='official'`` with SE maps renumbered per crop.
        """
        if isinstance(data_samples, torch.Tensor):
            se = data_samples.long()
        else:
            if any('se_map' not in s for s in data_samples):
                raise KeyError('SSC needs SE maps: give the training dataset se_map_dir (and '
                               'keep LoadSEMap in its pipeline; see configs/s2c/)')
            if self.negatives == 'official' and any(
                    s.get('se_ids', 'crop') != 'image' for s in data_samples):
                raise ValueError(
                    "SSCLoss(negatives='official') needs the official segment numbering: add "
                    "dict(type='RenumberSegmentsBeforeCrop') to the training pipeline right "
                    "before RandomCrop")
            se = torch.stack([s['se_map'] for s in data_samples]).long()
        se = se.to(feat.device)
        size = tuple(crop_size) if crop_size is not None else tuple(se.shape[-2:])
        feat = F.interpolate(feat, size=size, mode='bilinear', align_corners=False)
        # <normalize(f_p), proto_k> = <f_p, proto_k> / |f_p|: dividing the (B, K, H, W)
        # logits instead of the (B, D, H, W) features is the same function with a cheaper
        # backward (F.normalize's eps 1e-12)
        inv_norm = 1.0 / torch.linalg.vector_norm(feat, dim=1, keepdim=True).clamp_min(1e-12)
        with torch.no_grad():
            protos, counts = segment_prototypes(feat * inv_norm, se)
        protos = F.normalize(protos, dim=2)
        b, slots = counts.shape
        present = counts > 0
        num_segments = present[:, 1:].sum(dim=1)
        min_segments = self.min_segments if self.negatives == 'segments' else 0
        keep_image = num_segments >= min_segments
        target = se.clone()
        target[~keep_image] = 0
        if not bool((target > 0).any()):
            return feat.sum() * 0.0
        logits = torch.bmm(protos, feat.flatten(2)).view(b, slots, *size)
        logits = logits * (inv_norm * self.temperature)
        if self.negatives == 'segments':
            allowed = present.clone()
            allowed[:, 0] = False
            logits = logits.masked_fill(~allowed.view(b, slots, 1, 1), float('-inf'))
        # uncovered pixels (id 0) are ignored as targets
        target = target.masked_fill(target == 0, -100)
        loss = F.cross_entropy(logits, target, ignore_index=-100)
        return self.loss_weight * loss
