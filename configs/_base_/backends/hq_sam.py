# Prompt back-end: HQ-SAM (SysCV/sam-hq), SAM plus a high-quality output token, loaded strictly
# from the authors' checkpoint (a vanilla SAM file is refused). It ships SAM's frozen image
# encoder, so it reads a vanilla ViT-H embedding cache, but it needs the first
# global-attention ViT block's output in it: sam_embeddings.early_features=True.
# Outputs: single, multi_0, multi_1, multi_2, hq; HQ-SAM's own predictor = 'hq_official'.
prompt_backend = dict(type='hq_sam', model_type='vit_h', checkpoint='checkpoints/sam_hq_vit_h.pth')
