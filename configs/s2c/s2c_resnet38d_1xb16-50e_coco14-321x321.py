# S2C on MS-COCO 2014: the S2C objective (loss_cls + loss_ssc + loss_cpm, every setting of the
# VOC config) with the COCO data and schedule of the COCO CAM baseline (EPS's ResNet-38 COCO
# schedule; the S2C paper gives none). Caches at this scale: 82,081 SE maps (a few GiB) and
# 82,081 ViT-H embeddings (about 160 GiB in fp16); the cache tools print the expected size and
# refuse to start when the disk cannot hold it. Shard them over GPUs (torchrun) or machines
# (--shard I/N):
#   python tools/cache_se_maps.py CONFIG
#   python tools/cache_sam_embeddings.py CONFIG
#   python tools/train.py CONFIG
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

# ---------------------------------------------------------------- change these
data_root = 'data/coco2014'
se_map_dir = 'se_maps/sam_amg-vit_h-smallest_on_top'  # relative to data_root
embedding_dir = data_root + '/sam_embeddings/vit_h'
# ------------------------------------------------------------------------------
split_dirs = dict(
    train=dict(img_dir='train2014', seg_dir='SegmentationClass/train2014'),
    val=dict(img_dir='val2014', seg_dir='SegmentationClass/val2014'))

model = dict(num_classes=80, cpm=dict(embedding_dir=embedding_dir))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSEMap'),
    dict(type='RandomRescaleLongSide', min_long=256, max_long=448),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, prob=0.8),
    dict(type='RandomGrayscale', prob=0.02),
    dict(type='Normalize'),
    dict(type='RandomCrop', crop_size=321),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    dataset=dict(type='COCO14ClsDataset', data_root=data_root,
                 ann_file='ImageSets/Segmentation/train.txt', img_dir='train2014',
                 split_dirs=split_dirs, se_map_dir=se_map_dir, pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(type='COCO14ClsDataset', data_root=data_root,
                 ann_file='ImageSets/Segmentation/val.txt', img_dir='val2014',
                 seg_dir='SegmentationClass/val2014', split_dirs=split_dirs))
test_dataloader = val_dataloader
val_evaluator = dict(num_classes=81)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=50, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50, val_interval=50)
