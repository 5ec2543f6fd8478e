# DeepLabV2 ResNet-101 trained on MS-COCO 2014 train pseudo-labels, scored on val (81 classes):
# the schedule of the peers' COCO runs (ReCAM / LPCAM, DeepLabV2 with ImageNet init: batch 10,
# 100k iterations, SGD lr 2e-4, momentum 0.9, weight decay 5e-4, poly 0.9, crop 321, random
# scale 0.5-1.5). ImageNet init only: never start a COCO run from a COCO-pretrained model.
_base_ = ['./deeplabv2_r101-d8_1xb10-20k_voc12aug-pseudo-321x321.py']
custom_imports = dict(imports=['s2c.models.segmentation', 's2c.evaluation.segmentation_metric',
                               's2c.datasets.segmentation_coco14'],
                      allow_failed_imports=False)
data_root = 'data/coco2014'
# Pseudo-labels of train2014 (tools/make_pseudo_labels.py --out; tools/train_seg.py
# --pseudo-labels DIR): absolute, or relative to data_root.
pseudo_label_dir = 'pseudo_labels'

model = dict(decode_head=dict(num_classes=81))
crop_size = (321, 321)
# Random scale 0.5-1.5 of the image (COCO's long side is 640 px).
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(640, 640), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    dataset=dict(
        type='COCO14SegDataset',
        data_root=data_root,
        data_prefix=dict(img_path='train2014', seg_map_path=pseudo_label_dir),
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='COCO14SegDataset',
        data_root=data_root,
        data_prefix=dict(img_path='val2014', seg_map_path='SegmentationClass/val2014'),
        ann_file='ImageSets/Segmentation/val.txt'))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=100000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100000, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000))
