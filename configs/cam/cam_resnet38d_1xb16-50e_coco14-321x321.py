# CAM baseline on MS-COCO 2014: the ResNet-38d classifier of S2C with the classification loss
# only. The S2C paper gives no COCO schedule (its code has no COCO); this is the one of the
# ResNet-38 CAM classifier of EPS (Lee et al., CVPR 2021; halbielee/EPS script/coco_cls.sh),
# the closest S2C-family code with COCO: batch 16, random long side 256-448, crop 321, SGD lr
# 0.01 (poly 0.9, weight decay 5e-4, PSA's momentum quirk as in S2C), 256,500 iterations =
# 50 epochs of the 82,081 train images. Validation (CAM mIoU on val, 40,137 images) runs at
# the end only. Run:
#   python tools/train.py configs/cam/cam_resnet38d_1xb16-50e_coco14-321x321.py
_base_ = [
    '../_base_/models/cam_resnet38d.py',
    '../_base_/datasets/coco14_cls.py',
    '../_base_/schedules/sgd_poly_40e.py',
    '../_base_/default_runtime.py',
]

# ---------------------------------------------------------------- change these
data_root = 'data/coco2014'  # train2014/, val2014/, SegmentationClass/, ImageSets/, cls_labels
model = dict(num_classes=80,
             backbone=dict(pretrained='checkpoints/resnet38d_ilsvrc_cls1000.pth'))
# ------------------------------------------------------------------------------

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=50, by_epoch=True,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50, val_interval=50)
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
