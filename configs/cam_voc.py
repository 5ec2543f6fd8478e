# CAM baseline on PASCAL VOC 2012: the ResNet-38 classifier of S2C trained with the
# classification loss only (S2C's optimiser recipe). Run:
#   python tools/train.py configs/cam_voc.py
_base_ = [
    './_base_/default_runtime.py',
    './_base_/datasets/voc12_cls.py',
    './_base_/schedules/s2c_sgd_poly.py',
]

# ---------------------------------------------------------------- change these
data_root = 'data/VOCdevkit/VOC2012'      # VOCdevkit/VOC2012 with train_aug.txt + cls_labels.npy
# ImageNet weights converted by tools/model_converters/resnet38d_mxnet2torch.py from
# ilsvrc-cls_rna-a1_cls1000_ep-0001.params (PSA / S2C). None = random init (not useful).
imagenet_weights = 'checkpoints/resnet38d_ilsvrc_cls1000.pth'
# ------------------------------------------------------------------------------

model = dict(
    type='CAMClassifier',
    backbone=dict(type='ResNet38d', width=1.0, pretrained=imagenet_weights),
    num_classes=20,
    feat_dim=256)

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
