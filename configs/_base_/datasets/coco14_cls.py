# MS-COCO 2014 with image-level labels for CAM training: train (82,081 images with at least one
# annotation), validation = CAM mIoU on val (40,137; 81 classes). Layout and labels written by
#   python tools/dataset_converters/coco14.py data/coco2014
# Augmentation: S2C's transforms with EPS's COCO sizes (halbielee/EPS script/coco_cls.sh: random
# long side 256-448, random crop 321).
dataset_type = 'COCO14ClsDataset'
data_root = 'data/coco2014'
# Folders of each split for the tools that take --split (tools/test.py, cache tools, ...).
split_dirs = dict(
    train=dict(img_dir='train2014', seg_dir='SegmentationClass/train2014'),
    val=dict(img_dir='val2014', seg_dir='SegmentationClass/val2014'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSEMap'),  # no-op without se_map_dir; follows every geometric transform
    dict(type='RandomRescaleLongSide', min_long=256, max_long=448),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, prob=0.8),
    dict(type='RandomGrayscale', prob=0.02),
    dict(type='Normalize'),
    dict(type='RandomCrop', crop_size=321),
    dict(type='PackClsInputs'),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Normalize'),
    dict(type='PackClsInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='s2c.sample_list_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Segmentation/train.txt',
        img_dir='train2014',
        cls_labels='cls_labels.npy',
        split_dirs=split_dirs,
        pipeline=train_pipeline))

val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='s2c.sample_list_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageSets/Segmentation/val.txt',
        img_dir='val2014',
        seg_dir='SegmentationClass/val2014',
        cls_labels='cls_labels.npy',
        split_dirs=split_dirs,
        pipeline=val_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='CAMThresholdMetric', num_classes=81, thresholds=(0.0, 0.50, 0.01))
test_evaluator = val_evaluator
