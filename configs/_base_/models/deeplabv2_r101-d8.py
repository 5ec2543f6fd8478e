# DeepLabV2 (Chen et al., TPAMI 2018): ResNet-101 with output stride 8 (res4 dilation 2, res5
# dilation 4, every block) and the ASPP-L classifier (DLV2Head: four 3x3 dilated convs 6/12/
# 18/24 summed). BatchNorm frozen (ImageNet statistics), as in the DeepLabV2 protocol.
# ImageNet init: torchvision's ResNet-101 (downloaded by MMEngine on first use). For the caffe
# init most WSSS papers use, see deeplabv2_r101-caffe-d8_*.py.
custom_imports = dict(imports=['s2c.models.segmentation', 's2c.evaluation.segmentation_metric'],
                      allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=False)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained='torchvision://resnet101',
    backbone=dict(
        type='ResNet',
        depth=101,
        num_stages=4,
        out_indices=(3, ),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        contract_dilation=False,
        norm_cfg=norm_cfg,
        norm_eval=True,
        style='pytorch'),
    decode_head=dict(
        type='DLV2Head',
        in_channels=2048,
        in_index=0,
        dilations=(6, 12, 18, 24),
        num_classes=21,
        align_corners=False,
        # Mean over the non-ignored pixels, as deeplab-pytorch's nn.CrossEntropyLoss.
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
