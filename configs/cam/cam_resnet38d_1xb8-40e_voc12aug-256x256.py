# CAM baseline on PASCAL VOC 2012: the ResNet-38d classifier of S2C trained with the
# classification loss only (S2C's optimiser recipe: 1 GPU x batch 8, 40 epochs of train_aug,
# random 256 x 256 crops). Run:
#   python tools/train.py configs/cam/cam_resnet38d_1xb8-40e_voc12aug-256x256.py
_base_ = [
    '../_base_/models/cam_resnet38d.py',
    '../_base_/datasets/voc12aug_cls.py',
    '../_base_/schedules/sgd_poly_40e.py',
    '../_base_/default_runtime.py',
]

# ---------------------------------------------------------------- change these
data_root = 'data/VOCdevkit/VOC2012'  # VOCdevkit/VOC2012 with train_aug.txt + cls_labels.npy
# ImageNet weights (None = random init, not useful):
model = dict(backbone=dict(pretrained='checkpoints/resnet38d_ilsvrc_cls1000.pth'))
# ------------------------------------------------------------------------------

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
