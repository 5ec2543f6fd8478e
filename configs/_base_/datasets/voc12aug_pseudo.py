# PASCAL VOC 2012 for the segmentation stage: train on the pseudo-labels of train_aug
# (10,582 images; the PNG folder written by tools/make_pseudo_labels.py), validate and test on
# val (1,449) with the real ground truth. mmseg's PascalVOCDataset (21 classes, 255 ignored).
dataset_type = 'PascalVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'
# Pseudo-label folder: absolute, or relative to data_root. tools/train_seg.py --pseudo-labels
# DIR sets it (train_dataloader.dataset.data_prefix.seg_map_path).
pseudo_label_dir = 'pseudo_labels'
crop_size = (321, 321)
# Images are read without applying an EXIF orientation tag (color_ignore_orientation), the
# frame of the label PNGs, of the CRF's image reader and of every other stage.

# DeepLabV2 augmentation: random scale 0.5-1.5 (of the long side, 500 px for VOC), random
# crop (padded with 255 labels by the data preprocessor), horizontal flip.
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(500, 500), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# Single scale on the full image (no resize).
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# mmseg's --tta layout (tools/test_seg.py builds its modes from test_pipeline).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]

train_dataloader = dict(
    batch_size=10,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path=pseudo_label_dir),
        ann_file='ImageSets/Segmentation/train_aug.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
