# S2C on PASCAL VOC 2012 (CVPR 2024): CAM classifier trained with loss_cls + loss_ssc + loss_cpm.
# Before training, build the SAM caches once (see README, "SAM caches"):
#   python tools/cache_se_maps.py configs/s2c_voc.py          # SE maps for SSC
#   python tools/cache_sam_embeddings.py configs/s2c_voc.py   # embeddings for CPM
# then: python tools/train.py configs/s2c_voc.py
_base_ = ['./cam_voc.py', './_base_/sam/sam_vit_h.py']

# ---------------------------------------------------------------- change these
# data_root and the ImageNet weights: see configs/cam_voc.py (or --data-root).
sam = dict(model_type='vit_h', checkpoint='checkpoints/sam_vit_h_4b8939.pth')
# ------------------------------------------------------------------------------

# SE maps: LoadSEMap in the base pipeline follows every geometric transform (nearest);
# se_map_dir='auto' is the cache of the se_maps/sam blocks (<data_root>/se_maps/<tag>/).
train_dataloader = dict(dataset=dict(se_map_dir='auto'))

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
        backend=dict(type='sam'),            # model_type/checkpoint/device from `sam`
        embedding_source='cached',           # 'online' = official: ViT-H on every crop
        embedding_dir='auto',                # <data_root>/sam_embeddings/<tag>/
        scales=(0.5, 1.0, 1.5, 2.0),
        peak_threshold=0.5, min_distance=20, filter_size=3,
        selection='index2',                  # official: multimask output 2
        confidence='logit_x_meancam',        # official code; paper: 'stability_x_meancam'
        start_epoch=2,
        loss_weight=1.0))
