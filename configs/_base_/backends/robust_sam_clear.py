# Prompt back-end: RobustSAM's clear path (the authors' clear=True, also their automatic mask
# generator's): plain SAM decoding with RobustSAM's decoder weights. SAM's four outputs.
prompt_backend = dict(type='robust_sam_clear', model_type='vit_h',
                      checkpoint='checkpoints/robustsam_checkpoint_h.pth')
