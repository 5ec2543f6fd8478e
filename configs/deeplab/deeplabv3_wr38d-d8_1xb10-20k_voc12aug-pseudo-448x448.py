# DeepLabV3 with S2C's backbone: the wide ResNet-38d (output stride 8, 4096 channels) + ASPP,
# "deeplabv3 (wideResNet38 backbone)" + dense CRF as the S2C authors describe their final
# network (they released none). Recipe of the PSA/SEAM family's ResNet-38 segmentation stage
# (YudeWang/semantic-segmentation-codebase, experiment/seamv1-pseudovoc/config.py): batch 10,
# 20k iterations, SGD lr 1e-3, momentum 0.9, weight decay 5e-4, poly 0.9, head lr x10, crop 448,
# random scale 0.5-1.5 + flip; backbone BatchNorm frozen and conv1a frozen, as there.
# ImageNet init: the converted MXNet weights the CAM classifier uses
# (tools/model_converters/resnet38d_mxnet2torch.py).
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py', '../_base_/datasets/voc12aug_pseudo.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_20k.py'
]
custom_imports = dict(imports=['s2c.models.segmentation', 's2c.evaluation.segmentation_metric'],
                      allow_failed_imports=False)
crop_size = (448, 448)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ResNet38d',
        width=1.0,
        frozen_stages=('conv1a', ),
        freeze_bn=True,
        pretrained='checkpoints/resnet38d_ilsvrc_cls1000.pth'),
    decode_head=dict(in_channels=4096, in_index=-1, channels=512, num_classes=21,
                     loss_decode=dict(avg_non_ignore=True)),  # mean over non-ignored pixels
    auxiliary_head=None)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(500, 500), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.0)}))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=20000, by_epoch=False)
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000,
                                     max_keep_ckpts=3))
tta_model = dict(type='DenseCRFSegTTAModel')
# mmseg's runtime names its visualizer 'visualizer' (one per process); each run gets its own.
visualizer = dict(_delete_=True, type='SegLocalVisualizer',
                  vis_backends=[dict(type='LocalVisBackend')])
