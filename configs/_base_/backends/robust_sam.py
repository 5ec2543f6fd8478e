# Prompt back-end: RobustSAM (robustsam/RobustSAM), the robust decoding path its predictor
# uses (anti-degradation blocks, robust output token), loaded strictly from the authors'
# checkpoint. Its checkpoint holds its own image encoder: build the embedding cache with it
# (sam.checkpoint = the same file) and with sam_embeddings.early_features=True.
# One output, 'robust' (its IoU head was never trained for it: best_iou is refused).
# bn_mode: 'per_sample' (the authors' inference: BatchNorm on each sample's statistics) or
# 'running'.
prompt_backend = dict(type='robust_sam', model_type='vit_h',
                      checkpoint='checkpoints/robustsam_checkpoint_h.pth', bn_mode='per_sample')
