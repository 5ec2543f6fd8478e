# Tiny SAM for tests and the CPU demo: a 2-block ViT at 256 px input (embedding 256 x 16 x 16),
# built by the same code as the real models.
# checkpoint=None means RANDOM WEIGHTS: the cache jobs seed torch (seed 0) before building so
# every process builds the same model, warn loudly, and record it in the cache manifests.
sam = dict(model_type='tiny', checkpoint=None, device='auto', autocast_dtype=None)

# See sam_vit_h.py for the meaning of these blocks.
se_maps = dict(
    provider=dict(type='sam_amg', points_per_side=32, pred_iou_thresh=0.88,
                  stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7,
                  crop_n_layers=0),
    overlap='smallest_on_top',
    root=None)

# ~128 KiB per image.
sam_embeddings = dict(root=None, early_features=False)
