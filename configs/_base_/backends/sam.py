# Prompt back-end of CPM and of `--method sam`: vanilla SAM's prompt encoder + mask decoder,
# loaded strictly from the official checkpoint. It must hold the image encoder the embedding
# cache was made with (checked by its encoder_id when CPM is built). Swap the back-end by
# swapping this file in a config's _base_ list.
prompt_backend = dict(type='sam', model_type='vit_h',
                      checkpoint='checkpoints/sam_vit_h_4b8939.pth')
