# S2C with RobustSAM as CPM's prompt back-end (configs/_base_/backends/robust_sam.py).
# RobustSAM's checkpoint holds its own image encoder, so the embedding cache is made with that
# file (its encoder_id is checked when CPM is built) and holds the early ViT block:
#   python tools/cache_sam_embeddings.py CONFIG   # -> <data_root>/sam_embeddings/robust_vit_h-early
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

data_root = 'data/VOCdevkit/VOC2012'
robust_checkpoint = 'checkpoints/robustsam_checkpoint_h.pth'
embedding_dir = data_root + '/sam_embeddings/robust_vit_h-early'
# The `sam` block (what makes the caches) is RobustSAM here, for its encoder's embeddings.
# Build the SE maps with the plain S2C config (vanilla SAM, the same se_map_dir); running
# tools/cache_se_maps.py with this config into that folder is refused (other settings).
sam = dict(checkpoint=robust_checkpoint, variant='robust_sam')
sam_embeddings = dict(early_features=True)

model = dict(
    cpm=dict(
        backend=dict(_delete_=True, type='robust_sam', model_type='vit_h',
                     checkpoint=robust_checkpoint, bn_mode='per_sample'),
        embedding_dir=embedding_dir,
        selection='robust'))
