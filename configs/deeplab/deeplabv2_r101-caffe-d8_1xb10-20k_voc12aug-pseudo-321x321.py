# DeepLabV2 ResNet-101 from DeepLab's caffe init (deeplabv1_resnet101-imagenet.pth, the init of
# most DeepLabV2 WSSS papers), converted once with
#   python tools/model_converters/deeplab_resnet101_caffe2mmseg.py \
#       deeplabv1_resnet101-imagenet.pth checkpoints/deeplabv1_resnet101-imagenet_mmseg.pth
# Caffe-style ResNet (stride on the 1x1 conv) fed BGR images minus the caffe mean, std 1.
# The COCO-pretrained file (deeplabv1_resnet101-coco.pth) converts the same way, but must not be
# used for COCO experiments, and VOC numbers with it are not comparable with ImageNet-init ones.
# Difference: deeplab-pytorch's stem max-pool rounds its output size up (ceil_mode), mmseg's
# rounds down (both pad by 1).
_base_ = './deeplabv2_r101-d8_1xb10-20k_voc12aug-pseudo-321x321.py'
model = dict(
    pretrained=None,
    data_preprocessor=dict(mean=[104.008, 116.669, 122.675], std=[1.0, 1.0, 1.0],
                           bgr_to_rgb=False),
    backbone=dict(
        style='caffe',
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/deeplabv1_resnet101-imagenet_mmseg.pth')))
