# The S2C CAM classifier (official networks/resnet38d.py Net_CAM): wide ResNet-38d with output
# stride 8 -> fc8 (1x1, 4096->256, no bias) -> ReLU = feat (SSC) -> fc9 (1x1, 256->C, no bias)
# = CAM -> global average pooling = logits; multi-label BCE on the image labels.
# conv1a/b2/b2_1/b2_2 and every BatchNorm are frozen (ResNet38d defaults), as in S2C.
# ImageNet weights: converted by tools/model_converters/resnet38d_mxnet2torch.py from the
# PSA / S2C file ilsvrc-cls_rna-a1_cls1000_ep-0001.params.
model = dict(
    type='CAMClassifier',
    backbone=dict(type='ResNet38d', width=1.0,
                  pretrained='checkpoints/resnet38d_ilsvrc_cls1000.pth'),
    num_classes=20,
    feat_dim=256,
    loss_cls=dict(type='MultiLabelBCELoss', loss_weight=1.0))
