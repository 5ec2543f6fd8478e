# DeepLabV2 ResNet-101 trained on VOC train_aug pseudo-labels, the protocol most WSSS papers
# report (settings of kazuto1011/deeplab-pytorch configs/voc12.yaml): batch 10, 20k
# iterations, SGD lr 2.5e-4, momentum 0.9, weight decay 5e-4, poly 0.9, head lr x10 (biases
# x20, no decay), crop 321, random scale 0.5-1.5 + flip; tested on the full image (val).
# Differences from deeplab-pytorch: its scales are drawn from {0.5, 0.75, 1, 1.25, 1.5} (here
# continuous), its poly steps every 10 iterations, and its MSC training (extra 0.5/0.75 inputs)
# is not used.
# If the loss turns NaN from an ImageNet init, train with the class-balanced loss:
#   --cfg-options model.decode_head.loss_decode.type=ClassBalancedCELoss
_base_ = [
    '../_base_/models/deeplabv2_r101-d8.py', '../_base_/datasets/voc12aug_pseudo.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_20k.py'
]
crop_size = (321, 321)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=2.5e-4, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={
        'decode_head.aspp.0.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'decode_head.aspp.1.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'decode_head.aspp.2.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'decode_head.aspp.3.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'decode_head': dict(lr_mult=10.0),
    }))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=20000, by_epoch=False)
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000,
                                     max_keep_ckpts=3))
tta_model = dict(type='DenseCRFSegTTAModel')
# mmseg's runtime names its visualizer 'visualizer' (one per process); each run gets its own.
visualizer = dict(_delete_=True, type='SegLocalVisualizer',
                  vis_backends=[dict(type='LocalVisBackend')])
