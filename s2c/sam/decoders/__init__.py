"""SAM's mask decoder, reorganised: one image with many prompts (AMG), several images
with their prompts in one call (prompt back-ends), the shared output heads, and the
decoders of SAM variants (HQ-SAM, RobustSAM)."""
from .batched import decode_batched, decode_shared_image
from .hq import MaskDecoderHQ, decode_batched_hq, hq_features
from .mask_heads import predict_iou, predict_mask_logits
from .one_image import decode_tokens, is_uniform_dense
from .robust import BN_MODES, MaskDecoderRobust, decode_batched_robust, robust_features

__all__ = [
    'decode_batched', 'decode_shared_image', 'predict_iou', 'predict_mask_logits',
    'decode_tokens', 'is_uniform_dense', 'MaskDecoderHQ', 'decode_batched_hq', 'hq_features',
    'BN_MODES', 'MaskDecoderRobust', 'decode_batched_robust', 'robust_features'
]
