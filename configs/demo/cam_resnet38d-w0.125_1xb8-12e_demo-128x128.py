# CPU demo of the CAM baseline on the synthetic dataset of tools/make_demo_data.py
# (1 process x batch 8, 12 epochs, 128 x 128 crops).
# HONEST NOTE: this is not the paper setting. The network is ResNet-38d at 1/8 width,
# randomly initialised (no ImageNet weights can be downloaded here), so, unlike S2C,
# it trains its BatchNorm layers and all stages, and uses SGD momentum 0.9 and small
# crops to learn in a few minutes on 2 CPU cores. It exercises exactly the code paths
# of the VOC CAM config. Run: make demo (or python tools/run_demo.py).
_base_ = [
    '../_base_/models/cam_resnet38d.py',
    '../_base_/datasets/voc12aug_cls.py',
    '../_base_/schedules/sgd_poly_40e.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/demo'
demo_classes = ('disc', 'box', 'triangle', 'ring')
max_epochs = 12

model = dict(
    backbone=dict(type='ResNet38d', width=0.125, freeze_bn=False, frozen_stages=(),
                  dropout=0.0, pretrained=None),
    num_classes=len(demo_classes),
    feat_dim=64)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadSEMap'),  # no-op without se_map_dir; follows every geometric transform
    dict(type='RandomRescaleLongSide', min_long=112, max_long=176),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ColorJitter', brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, prob=0.8),
    dict(type='Normalize'),
    dict(type='RandomCrop', crop_size=128),
    dict(type='PackClsInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, ann_file='ImageSets/Segmentation/train.txt',
                 classes=demo_classes, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=data_root, ann_file='ImageSets/Segmentation/val.txt',
                 classes=demo_classes))
test_dataloader = val_dataloader
val_evaluator = dict(num_classes=len(demo_classes) + 1)
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=max_epochs, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
