# CPU demo of S2C on the synthetic dataset (tools/make_demo_data.py); `make demo` runs it.
# HONEST NOTE: no SAM weights can be downloaded here, so
#   - SE maps (SSC) come from Felzenszwalb superpixels (scikit-image), a cheap stand-in for SAM's
#     segment-everything masks;
#   - CPM uses the 'tiny' SAM (2 ViT blocks, 256 px) with RANDOM weights: its masks carry no
#     knowledge, so loss_cpm here only exercises the code path (with a small weight).
# Everything else is the code path of the VOC S2C config (caches, geometry, batched decoding).
_base_ = [
    './cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py',
    '../_base_/sam/sam_tiny.py',
]

data_root = 'data/demo'
se_map_dir = 'se_maps/felzenszwalb'  # relative to data_root
embedding_dir = data_root + '/sam_embeddings/tiny'

sam = dict(device='cpu')
se_maps = dict(provider=dict(_delete_=True, type='felzenszwalb'))

train_dataloader = dict(dataset=dict(se_map_dir=se_map_dir))  # LoadSEMap is in the pipeline

model = dict(
    ssc=dict(type='SSCLoss', temperature=1.0, loss_weight=1.0),
    cpm=dict(type='CPM', backend=dict(type='sam', model_type='tiny', checkpoint=None),
             embedding_source='cached', embedding_dir=embedding_dir,
             scales=(0.5, 1.0, 1.5, 2.0), peak_threshold=0.5, min_distance=20, filter_size=3,
             selection='index2', confidence='logit_x_meancam', start_epoch=2, loss_weight=0.1))
