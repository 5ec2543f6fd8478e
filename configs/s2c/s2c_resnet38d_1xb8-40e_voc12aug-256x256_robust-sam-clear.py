# S2C with RobustSAM's clear path as CPM's prompt back-end (configs/_base_/backends/
# robust_sam_clear.py): SAM's maths on RobustSAM's decoder weights, S2C's index 2. Its
# embeddings come from RobustSAM's own encoder (no early block needed):
#   python tools/cache_sam_embeddings.py CONFIG   # -> <data_root>/sam_embeddings/robust_vit_h
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

data_root = 'data/VOCdevkit/VOC2012'
robust_checkpoint = 'checkpoints/robustsam_checkpoint_h.pth'
embedding_dir = data_root + '/sam_embeddings/robust_vit_h'
# `sam` (what makes the caches) is RobustSAM for its encoder; build the SE maps with the plain
# S2C config (this one would be refused on that folder: other settings)
sam = dict(checkpoint=robust_checkpoint, variant='robust_sam')

model = dict(
    cpm=dict(
        backend=dict(_delete_=True, type='robust_sam_clear', model_type='vit_h',
                     checkpoint=robust_checkpoint),
        embedding_dir=embedding_dir,
        selection='index2'))
