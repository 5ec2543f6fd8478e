# Prompt back-end: PerSAM (ZrrSkywalker/Personalize-SAM), training-free, on vanilla SAM weights.
# Our WSSS adaptation: the reference of a prompted (image, class) is the image's own CAM region
# of that class (CAM on the embedding grid > reference_threshold). Output: 'persam'.
# location_prior: 'add' (CAM peaks + the prior's positive/negative point), 'replace' (official:
# the prior only), 'none'. attn_sim_frame: 'input_frame' or 'official_stretch'.
# te_alias: 'official' (the authors' in-place addition) or 'clean'.
prompt_backend = dict(type='persam', model_type='vit_h', checkpoint='checkpoints/sam_vit_h_4b8939.pth',
                      reference_threshold=0.5, location_prior='add',
                      attn_sim_frame='input_frame', te_alias='official')
