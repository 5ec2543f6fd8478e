"""SAM for s2c: building models (strict checkpoints, encoder identity), preprocessing,
the image encoder, reorganised mask decoders, segment-everything (AMG), SE-map
composition and providers, and the prompt back-ends."""
from .amg import AMGResult, SamAMG
from .build import (
    SAM_MODEL_TYPES,
    build_sam,
    encoder_embed_dim,
    encoder_id,
    global_attn_indexes,
    sam_autocast,
)
from .encoder import early_block_index, encode_batch, encode_images
from .se_map import compose_se_map
from .stability import stability_score
from .transforms import original_to_input_coords, postprocess_logits, preprocess_image

__all__ = [
    'AMGResult', 'SamAMG', 'SAM_MODEL_TYPES', 'build_sam', 'encoder_embed_dim', 'encoder_id',
    'global_attn_indexes', 'sam_autocast', 'early_block_index', 'encode_batch', 'encode_images',
    'compose_se_map', 'stability_score', 'original_to_input_coords', 'postprocess_logits',
    'preprocess_image'
]
