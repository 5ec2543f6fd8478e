# PASCAL VOC 2012 (train_aug, 10,582 images) with image-level labels for CAM training, S2C's
# recipe (official voc12/data.py); validation: single-scale CAM mIoU on VOC train (1,464).
dataset_type = 'VOC12ClsDataset'
data_root = 'data/VOCdevkit/VOC2012'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSEMap'),  # no-op without se_map_dir; follows every geometric transform
    dict(type='RandomRescaleLongSide', min_long=256, max_long=512),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, prob=0.8),
    dict(type='RandomGrayscale', prob=0.02),
    dict(type='Normalize'),
    dict(type='RandomCrop', crop_size=256),
    dict(type='PackClsInputs'),
]
# Validation: single-scale CAM of the whole image, mIoU with a background-threshold search.
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Normalize'),
    dict(type='PackClsInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='s2c.sample_list_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Segmentation/train_aug.txt',
        cls_labels='cls_labels.npy',
        pipeline=train_pipeline))

val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='s2c.sample_list_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        # S2C reports CAM quality on VOC train (1,464 images with masks).
        ann_file='ImageSets/Segmentation/train.txt',
        cls_labels='cls_labels.npy',
        seg_dir='SegmentationClass',
        pipeline=val_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='CAMThresholdMetric', num_classes=21, thresholds=(0.0, 0.50, 0.01))
test_evaluator = val_evaluator
