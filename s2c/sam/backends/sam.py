"""The vanilla SAM prompt back-end."""
from __future__ import annotations

import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.sam.build import build_sam
from s2c.utils import resolve_device

from .base import SAM_OUTPUT_NAMES, ImageFeatures, MaskPrediction, PromptBackend, PromptBatch
from .batched_decoder import decode_batched


@PROMPT_BACKENDS.register_module(name='sam')
class SamPromptBackend(PromptBackend):
    """Vanilla SAM: prompt encoder + mask decoder (+ image encoder for the online mode).

    Prompts with different numbers of points are decoded in groups of equal
    point count, so that no extra padding token changes SAM's output: the
    result equals segment-anything's decoder called once per prompt.

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official SAM checkpoint (strict loading) or ``None``
            (random weights: tests and the CPU demo only).
        device: ``'auto'``, ``'cpu'`` or ``'cuda'``.
        with_image_encoder: Keep the ViT image encoder (online embedding source);
            the cached source needs only the prompt encoder and mask decoder, so the
            encoder is dropped after loading to save memory.
        seed: Seed for random weights when ``checkpoint`` is ``None`` (must match
            the seed that built the embedding cache).
        encode_batch_size: Images per image-encoder call in the online mode (the ViT's
            global attention holds ``B x heads x 4096 x 4096`` maps: batch 8 of vit_b at
            1024 px needs > 20 GB); the result does not depend on it.
    """

    def __init__(self, model_type: str = 'vit_h', checkpoint: str | None = None,
                 device: str = 'auto', with_image_encoder: bool = False, seed: int = 0,
                 encode_batch_size: int = 2, **unused) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # random weights must not move the global RNG
            torch.manual_seed(seed)
            sam = build_sam(model_type, checkpoint, device='cpu')
        self.model_type = model_type
        self.encode_batch_size = max(1, int(encode_batch_size))
        self.img_size = int(sam.image_encoder.img_size)
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.image_encoder = sam.image_encoder if with_image_encoder else None
        self.register_buffer('pixel_mean', sam.pixel_mean.clone(), persistent=False)
        self.register_buffer('pixel_std', sam.pixel_std.clone(), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.to(resolve_device(device))

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """Encode ``(B, 3, S, S)`` RGB images in [0, 255] already resized to the input frame."""
        if self.image_encoder is None:
            return super().encode(images)
        x = (images.to(self.device) - self.pixel_mean) / self.pixel_std
        step = self.encode_batch_size
        emb = torch.cat([self.image_encoder(x[i:i + step]) for i in range(0, x.shape[0], step)])
        b, s = images.shape[0], images.shape[-1]
        size = torch.tensor([[images.shape[-2], s]] * b, device=self.device)
        return ImageFeatures(embeddings=emb, input_sizes=size, original_sizes=size.clone(),
                             img_size=self.img_size)

    @torch.no_grad()
    def decode(self, features: ImageFeatures, prompts: PromptBatch) -> MaskPrediction:
        """Decode every prompt; see :class:`~s2c.sam.backends.base.PromptBackend`."""
        emb = features.embeddings.to(self.device, torch.float32)
        n = len(prompts)
        side = emb.shape[-1] * 4
        logits = torch.empty(n, 4, side, side, device=self.device)
        iou = torch.empty(n, 4, device=self.device)
        counts = (prompts.labels != -1).sum(dim=1)
        image_pe = self.prompt_encoder.get_dense_pe()
        for count in counts.unique().tolist():
            rows = torch.nonzero(counts == count).flatten()
            keep = prompts.labels[rows] != -1
            pts = prompts.points[rows][keep].view(len(rows), count, 2).to(self.device).float()
            lab = prompts.labels[rows][keep].view(len(rows), count).to(self.device)
            sparse, dense = self.prompt_encoder(points=(pts, lab), boxes=None, masks=None)
            out, scores = decode_batched(self.mask_decoder, emb, image_pe, sparse, dense,
                                         prompts.image_index[rows].to(self.device))
            logits[rows.to(self.device)] = out.float()  # fp16/bf16 under autocast
            iou[rows.to(self.device)] = scores.float()
        return MaskPrediction(logits=logits, iou=iou, names=SAM_OUTPUT_NAMES)
