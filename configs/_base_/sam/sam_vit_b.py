# SAM ViT-B: official checkpoint sam_vit_b_01ec64.pth (facebookresearch/segment-anything),
# loaded strictly. Lighter than ViT-H (~9 s per image on 2 CPU cores vs ~35 s).
# autocast_dtype: None = float32; 'bf16' = bfloat16 autocast (CUDA only).
sam = dict(model_type='vit_b', checkpoint='checkpoints/sam_vit_b_01ec64.pth', device='auto',
           autocast_dtype=None)

# See sam_vit_h.py for the meaning of these blocks.
se_maps = dict(
    provider=dict(type='sam_amg', points_per_side=32, pred_iou_thresh=0.88,
                  stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7,
                  crop_n_layers=0),
    overlap='smallest_on_top',
    root=None)

# 2.0 MiB per image; +6 MiB with early_features (block 2, 768 channels).
sam_embeddings = dict(root=None, early_features=False)
