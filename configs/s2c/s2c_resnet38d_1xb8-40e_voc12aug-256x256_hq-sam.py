# S2C with HQ-SAM as CPM's prompt back-end (the back-end of configs/_base_/backends/hq_sam.py).
# Caches: the same SE maps; embeddings WITH the early ViT block (+10 MiB per image for ViT-H):
#   python tools/cache_sam_embeddings.py CONFIG   # -> <data_root>/sam_embeddings/vit_h-early
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

data_root = 'data/VOCdevkit/VOC2012'
embedding_dir = data_root + '/sam_embeddings/vit_h-early'
sam_embeddings = dict(early_features=True)

model = dict(
    cpm=dict(
        backend=dict(_delete_=True, type='hq_sam', model_type='vit_h',
                     checkpoint='checkpoints/sam_hq_vit_h.pth'),
        embedding_dir=embedding_dir,
        # HQ-SAM's predictor output (best-IoU multimask + HQ logit); also 'hq' (HQ token only),
        # 'index2_plus_hq' (S2C's index 2 the HQ way), 'index2'
        selection='hq_official'))
