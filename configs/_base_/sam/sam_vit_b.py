# SAM ViT-B for the caches: official checkpoint sam_vit_b_01ec64.pth
# (facebookresearch/segment-anything), loaded strictly. Lighter than ViT-H (~9 s per image on
# 2 CPU cores vs ~35 s). se_maps / sam_embeddings: as in sam_vit_h.py (2.0 MiB per embedding;
# +6 MiB with early_features: block 2, 768 channels).
_base_ = ['./sam_vit_h.py']

sam = dict(model_type='vit_b', checkpoint='checkpoints/sam_vit_b_01ec64.pth')
