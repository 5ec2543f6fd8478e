# SAM ViT-H (the model of the S2C paper): official checkpoint sam_vit_h_4b8939.pth
# (facebookresearch/segment-anything), loaded strictly.
# autocast_dtype: None = float32; 'bf16' = bfloat16 autocast (CUDA only). float16 is refused:
# the ViT-H image encoder is known to produce garbage in fp16.
sam = dict(model_type='vit_h', checkpoint='checkpoints/sam_vit_h_4b8939.pth', device='auto',
           autocast_dtype=None)

# Segment-everything maps for SSC, cached by tools/cache_se_maps.py (uint16 PNG per image).
# Provider parameters = segment-anything's SamAutomaticMaskGenerator defaults (no crops).
# overlap: 'smallest_on_top' (paper) or 'highest_iou_on_top' (official code).
# root=None -> <data_root>/se_maps/<tag>/ (tag names provider, model, overlap + hash).
se_maps = dict(
    provider=dict(type='sam_amg', points_per_side=32, pred_iou_thresh=0.88,
                  stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7,
                  crop_n_layers=0),
    overlap='smallest_on_top',
    root=None)

# Image embeddings for CPM, cached by tools/cache_sam_embeddings.py (float16 .npy per image,
# 2.0 MiB; +10 MiB with early_features for ViT-H). early_features=True also stores the output
# of the first global-attention ViT block (needed by the HQ-SAM / RobustSAM prompt back-ends).
# root=None -> <data_root>/sam_embeddings/<tag>/.
sam_embeddings = dict(root=None, early_features=False)
