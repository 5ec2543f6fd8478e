"""SAM for s2c: building models, preprocessing, segment-everything and SE maps.

Submodules: ``build`` (models, strict checkpoints, checkpoint hashes),
``transforms`` (SAM's preprocessing and the inverse mapping of logits),
``amg`` (our segment-everything generator), ``se_map`` (SE maps: composition
and uint16 PNG I/O), ``se_providers`` (registered ``SE_PROVIDERS``).
"""
from .amg import AMGResult, SamAMG
from .build import SAM_MODEL_TYPES, build_sam, checkpoint_sha256, global_attn_indexes, sam_autocast
from .se_map import compose_se_map, load_se_map, save_se_map
from .transforms import original_to_input_coords, postprocess_logits, preprocess_image

__all__ = [
    'SAM_MODEL_TYPES', 'build_sam', 'checkpoint_sha256', 'global_attn_indexes', 'sam_autocast',
    'preprocess_image', 'original_to_input_coords', 'postprocess_logits', 'SamAMG', 'AMGResult',
    'compose_se_map', 'save_se_map', 'load_se_map'
]
