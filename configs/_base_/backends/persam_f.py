# Prompt back-end: PerSAM-F (ZrrSkywalker/Personalize-SAM), on vanilla SAM weights: per
# prompted (image, class), two weights of SAM's three multimask logits fitted to the class's
# CAM region (a self-fit: there is no ground-truth mask in WSSS), then the cascade.
# Output: 'persam_f'. fit_steps / fit_lr: the authors' 1,000 AdamW steps at 1e-3.
prompt_backend = dict(type='persam_f', model_type='vit_h',
                      checkpoint='checkpoints/sam_vit_h_4b8939.pth', reference_threshold=0.5,
                      location_prior='add', fit_steps=1000, fit_lr=1e-3)
