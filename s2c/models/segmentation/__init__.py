"""The segmentation stage's parts, registered into mmsegmentation's ``MODELS`` registry.

Importing this package (a config's ``custom_imports``) makes them available to
mmseg configs: the ``ResNet38d`` backbone, the DeepLabV2 head ``DLV2Head``, the
class-balanced cross-entropy ``ClassBalancedCELoss`` and the test-time model
``DenseCRFSegTTAModel`` (mean of softmax over views + optional dense CRF).
mmseg is an optional dependency (``pip install -e .[seg]``): nothing else in
``s2c`` imports this package.
"""
from .balanced_ce_loss import ClassBalancedCELoss
from .caffe_resnet import caffe_to_mmseg, convert_caffe_resnet101, mmseg_to_caffe
from .dlv2_head import DLV2Head
from .resnet38d_backbone import SegResNet38d
from .tta_crf import DEEPLAB_CRF, DenseCRFSegTTAModel

__all__ = ['ClassBalancedCELoss', 'DEEPLAB_CRF', 'DLV2Head', 'DenseCRFSegTTAModel',
           'SegResNet38d', 'caffe_to_mmseg', 'convert_caffe_resnet101',
           'mmseg_to_caffe']
