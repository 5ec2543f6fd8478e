# S2C on PASCAL VOC 2012 (CVPR 2024): the CAM classifier trained with loss_cls + loss_ssc +
# loss_cpm (every official-code behaviour at once: the _official.py preset next to this file).
# Build the SAM caches once, then train:
#   python tools/cache_se_maps.py CONFIG          # SE maps for SSC -> <data_root>/<se_map_dir>
#   python tools/cache_sam_embeddings.py CONFIG   # embeddings for CPM -> embedding_dir
#   python tools/train.py CONFIG
_base_ = [
    '../cam/cam_resnet38d_1xb8-40e_voc12aug-256x256.py',
    '../_base_/sam/sam_vit_h.py',        # the SAM that makes the caches (`sam` block)
    '../_base_/backends/sam.py',         # the SAM decoder CPM prompts (`prompt_backend`)
]

# ---------------------------------------------------------------- change these
data_root = 'data/VOCdevkit/VOC2012'  # as in the CAM config; the SAM caches live under it
# The two cache folders: the cache tools write exactly these, training reads them
# (--data-root moves both along with the dataset).
se_map_dir = 'se_maps/sam_amg-vit_h-smallest_on_top'  # relative to data_root
embedding_dir = data_root + '/sam_embeddings/vit_h'
# ------------------------------------------------------------------------------

# SE maps: LoadSEMap in the base pipeline follows every geometric transform (nearest).
train_dataloader = dict(dataset=dict(se_map_dir=se_map_dir))

model = dict(
    # SSC (paper section 3.2): T multiplies the cosine (official T = 1).
    # negatives: 'segments' = softmax over the image's own segments (paper);
    #            'official' = also the uncovered-pixel prototype and zero logits of ids absent
    #                         from the crop (official model_s2c.py); it needs the official
    #                         numbering: add dict(type='RenumberSegmentsBeforeCrop') to
    #                         train_pipeline right before RandomCrop.
    ssc=dict(type='SSCLoss', temperature=1.0, loss_weight=1.0, negatives='segments'),
    # CPM (paper section 3.3), from the third epoch (0-based epoch 2, official --sstart 2).
    cpm=dict(
        type='CPM',
        backend={{_base_.prompt_backend}},
        embedding_source='cached',           # 'online' = official: ViT-H on every crop
        embedding_dir=embedding_dir,
        scales=(0.5, 1.0, 1.5, 2.0),
        peak_threshold=0.5, min_distance=20, filter_size=3,
        peak_rule='snapped',                 # 'official': plateau corners, first local peak dropped
        mask_chain='direct',                 # 'sam_postprocess' = official (Sam.postprocess_masks)
        ignore_padding=True,                 # False = official: padded crop pixels labelled
        selection='index2',                  # official: multimask output 2
        confidence='logit_x_meancam',        # official code; paper: 'stability_x_meancam'
        start_epoch=2,
        loss_weight=1.0))
