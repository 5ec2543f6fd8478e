"""The vanilla SAM prompt back-end (segment-anything's prompt encoder and mask decoder)."""
from __future__ import annotations

import torch

from s2c.registry import PROMPT_BACKENDS
from s2c.structures import ImageFeatures, MaskPrediction, PreparedFeatures, PromptBatch
from s2c.utils.device import resolve_device

from ..build import build_sam, encoder_id
from ..decoders import decode_batched, decode_shared_image, is_uniform_dense
from ..encoder import early_block_index, encode_batch
from .base import PromptBackend
from .selection import SAM_OUTPUT_NAMES


@PROMPT_BACKENDS.register_module(name='sam')
class SamPromptBackend(PromptBackend):
    """Vanilla SAM: prompt encoder + mask decoder (+ image encoder for the online mode).

    Prompts are decoded in groups of equal (point count, has box) so that no
    extra padding token changes SAM's output: the result equals
    segment-anything's decoder called once per prompt, for points, boxes and
    mask inputs alike. Outputs: ``single, multi_0, multi_1, multi_2`` (SAM's
    four mask tokens) with their predicted IoUs.

    Groups without mask inputs (CPM's point prompts, SAM refinement's points and
    boxes) go through the shared-image decoder
    (:func:`~s2c.sam.decoders.decode_shared_image`, the AMG's one-image decoder
    per image: the embedding is never repeated per prompt); its logits equal the
    library's up to float32 re-association (max abs difference < 4e-7 on the
    tiny SAM, the same selected masks). ``shared_image_decoder=False`` keeps the
    per-prompt gathering path (:func:`~s2c.sam.decoders.decode_batched`), which
    mask inputs always take.

    Args:
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``.
        checkpoint: Official SAM checkpoint (strict loading) or ``None``
            (random weights: tests and the CPU demo only).
        device: ``'auto'``, ``'cpu'`` or ``'cuda'`` (CPM moves the back-end to
            the device of the batch).
        with_image_encoder: Keep the ViT image encoder (online embedding source);
            the cached source needs only the prompt encoder and mask decoder, so the
            encoder is dropped after loading to save memory.
        seed: Seed of the random weights when ``checkpoint`` is ``None`` (must
            match the seed that built the embedding cache: 0).
        encode_batch_size: Images per image-encoder call in the online mode (the
            ViT's global attention holds ``B x heads x 4096 x 4096`` maps: batch 8
            of vit_b at 1024 px needs > 20 GB); the result does not depend on it.
        autocast_dtype: Online encoding precision: ``None`` (fp32) or ``'bf16'`` (CUDA).
        shared_image_decoder: Decode prompts without mask inputs with the
            shared-image decoder (default True; CPU, 1 thread, 12 CPM-like prompts of
            1-3 points over 8 images: 1.3-1.45x faster with a 64 x 64 embedding
            (vit_b/l/h), 1.15x with the tiny SAM); False: the per-prompt path.

    Raises:
        ValueError: Unknown ``model_type``; checkpoint of the wrong shapes.
        FileNotFoundError / RuntimeError / KeyError: Missing, unreadable or
            mismatching checkpoint (see :func:`s2c.sam.build.build_sam`).
    """

    #: Which checkpoint family :func:`~s2c.sam.build.build_sam` builds and loads.
    sam_variant = 'sam'

    def __init__(self, model_type: str = 'vit_h', checkpoint: str | None = None, *,
                 device: str = 'auto', with_image_encoder: bool = False, seed: int = 0,
                 encode_batch_size: int = 2, autocast_dtype: str | None = None,
                 shared_image_decoder: bool = True) -> None:
        super().__init__()
        sam = build_sam(model_type, checkpoint, device='cpu', seed=seed, variant=self.sam_variant)
        self.model_type = model_type
        self.output_names = SAM_OUTPUT_NAMES
        self.requires = frozenset()
        self.img_size = int(sam.image_encoder.img_size)
        self.encoder_id = encoder_id(model_type, checkpoint, seed=seed, model=sam)
        self.encode_batch_size = max(1, int(encode_batch_size))
        self.autocast_dtype = autocast_dtype
        self.shared_image_decoder = bool(shared_image_decoder)
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.image_encoder = sam.image_encoder if with_image_encoder else None
        self.early_block = early_block_index(sam, model_type)
        self.register_buffer('pixel_mean', sam.pixel_mean.clone(), persistent=False)
        self.register_buffer('pixel_std', sam.pixel_std.clone(), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.to(resolve_device(device))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """Encode ``(B, 3, S, S)`` RGB images in [0, 255] that fill the SAM input frame.

        Fills ``early`` when the back-end :attr:`requires` it.

        Returns:
            ImageFeatures: ``input_sizes`` = ``original_sizes`` = ``(S, S)``.
        """
        if self.image_encoder is None:
            return super().encode(images)
        x = (images.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        early_block = self.early_block if 'early' in self.requires else None
        emb, early = encode_batch(self.image_encoder, x, early_block=early_block,
                                  autocast_dtype=self.autocast_dtype,
                                  chunk_size=self.encode_batch_size)
        size = torch.tensor([list(images.shape[-2:])] * images.shape[0], device=self.device)
        return ImageFeatures(embeddings=emb, input_sizes=size, original_sizes=size.clone(),
                             early=early, img_size=self.img_size)

    @torch.no_grad()
    def decode(self, prepared: PreparedFeatures, prompts: PromptBatch) -> MaskPrediction:
        """Decode every prompt; see :class:`~s2c.sam.backends.base.PromptBackend`."""
        return self.decode_all(prepared, prompts, self.output_names)

    @torch.no_grad()
    def decode_all(self, prepared: PreparedFeatures, prompts: PromptBatch,
                   names: tuple[str, ...]) -> MaskPrediction:
        """Decode every prompt group by group (:meth:`decode_group`) into ``names`` channels."""
        emb = prepared.features.embeddings
        n = len(prompts)
        side = emb.shape[-1] * 4
        logits = torch.empty(n, len(names), side, side, device=self.device)
        iou = torch.full((n, len(names)), float('nan'), device=self.device)
        image_pe = self.prompt_encoder.get_dense_pe()
        for rows in prompts.groups():
            points, boxes, masks = prompts.group_inputs(rows)
            if points is not None:
                points = (points[0].to(self.device), points[1].to(self.device))
            sparse, dense = self.prompt_encoder(
                points=points, boxes=None if boxes is None else boxes.to(self.device),
                masks=None if masks is None else masks.to(self.device))
            if sparse.shape[0] != len(rows):  # a prompt with no point, box nor mask
                sparse = sparse.expand(len(rows), -1, -1)
                dense = dense.expand(len(rows), -1, -1, -1)
            extras = {k: v[rows].to(self.device) for k, v in prompts.extras.items()}
            out, scores = self.decode_group(prepared, image_pe, sparse, dense,
                                            prompts.image_index[rows].to(self.device), extras)
            rows = rows.to(self.device)
            logits[rows] = out.float()  # fp16/bf16 under autocast
            iou[rows, :scores.shape[1]] = scores.float()
        return MaskPrediction(logits=logits, iou=iou, names=tuple(names))

    def decode_group(self, prepared: PreparedFeatures, image_pe: torch.Tensor,
                     sparse: torch.Tensor, dense: torch.Tensor, image_index: torch.Tensor,
                     extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one group of prompts with equal token count.

        ``extras`` are the group's rows of ``prompts.extras`` (back-end specific).
        Vanilla SAM: the shared-image decoder when :attr:`shared_image_decoder`
        and the group has no mask input, else the per-prompt path.

        Args:
            prepared: The batch's prepared features (``(B, C, h, w)`` embeddings).
            image_pe: ``(1, C, h, w)`` dense positional encoding.
            sparse: ``(n, T, C)`` sparse prompt embeddings of the group.
            dense: ``(n, C, h, w)`` dense prompt embeddings.
            image_index: ``(n,)`` long: image of each prompt.
            extras: The group's rows of ``prompts.extras``.

        Returns:
            tuple: ``(n, M, s, s)`` logits of every output and ``(n, K)`` IoUs of
            the first ``K <= M`` outputs (the rest have no predicted IoU: NaN).
        """
        emb = prepared.features.embeddings
        if self.shared_image_decoder and is_uniform_dense(dense):
            return decode_shared_image(self.mask_decoder, emb, image_pe, sparse, dense,
                                       image_index)
        return decode_batched(self.mask_decoder, emb, image_pe, sparse, dense, image_index)
