# SAM ViT-H (the model of the S2C paper) for the caches: official checkpoint
# sam_vit_h_4b8939.pth (facebookresearch/segment-anything), loaded strictly.
# autocast_dtype: None = float32; 'bf16' = bfloat16 autocast (CUDA only). float16 is refused:
# the ViT-H image encoder is known to produce garbage in fp16.
sam = dict(model_type='vit_h', checkpoint='checkpoints/sam_vit_h_4b8939.pth', device='auto',
           autocast_dtype=None)

# Segment-everything maps for SSC, cached by tools/cache_se_maps.py (uint16 PNG per image,
# into the training dataset's se_map_dir). Provider parameters = segment-anything's
# SamAutomaticMaskGenerator defaults (no crops).
# overlap: 'smallest_on_top' (paper), 'highest_iou_on_top', or 'first_on_top' (official code:
# the first mask the generator lists on top; equals 'highest_iou_on_top' without crop layers).
# HQ-SAM's segment-everything instead: add to the provider
#   backend=dict(type='hq_sam', model_type='vit_h', checkpoint='checkpoints/sam_hq_vit_h.pth'),
#   selection='hq_official'
# (it encodes with this `sam` block's encoder, which HQ-SAM shares) and use another se_map_dir.
se_maps = dict(
    provider=dict(type='sam_amg', points_per_side=32, pred_iou_thresh=0.88,
                  stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7,
                  crop_n_layers=0),
    overlap='smallest_on_top')

# Image embeddings for CPM, cached by tools/cache_sam_embeddings.py (float16 .npy per image,
# 2.0 MiB, into model.cpm.embedding_dir). early_features=True also stores the output of the
# first global-attention ViT block (+10 MiB for ViT-H; HQ-SAM / RobustSAM back-ends).
# dtype: 'float16' or 'int8' (symmetric per-channel int8 with float32 scales: 1.0 MiB per
# ViT-H embedding, VOC train_aug 10.3 GiB instead of 20.7; CPM reads both as float32).
sam_embeddings = dict(early_features=False, dtype='float16')
