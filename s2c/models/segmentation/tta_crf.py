"""Test-time merging of augmented views and dense-CRF post-processing for mmseg segmentors."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from mmengine.model import BaseTTAModel
from mmengine.structures import PixelData
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample

from s2c.cam.crf import CRFParams, crf_inference
from s2c.utils.image_io import read_rgb_image

#: Dense-CRF parameters of the DeepLab stage, as the DeepLabV2 re-implementation most WSSS
#: papers use (kazuto1011/deeplab-pytorch, ``configs/voc12.yaml``: ITER_MAX 10, POS_W 3,
#: POS_XY_STD 1, BI_W 4, BI_XY_STD 67, BI_RGB_STD 3), applied to softmax probabilities.
DEEPLAB_CRF = CRFParams(iterations=10, gaussian_sxy=1.0, gaussian_compat=3.0,
                        bilateral_sxy=67.0, bilateral_srgb=3.0, bilateral_compat=4.0)


def crf_params(crf: bool | Mapping | CRFParams | None) -> CRFParams | None:
    """``None``/``False`` -> no CRF; ``True`` -> :data:`DEEPLAB_CRF`; a mapping overrides
    fields of :data:`DEEPLAB_CRF` (``iterations``, ``gaussian_sxy``...).

    Raises:
        TypeError: On an unknown field name.
    """
    if crf is None or crf is False:
        return None
    if crf is True:
        return DEEPLAB_CRF
    if isinstance(crf, CRFParams):
        return crf
    fields = {f.name for f in dataclasses.fields(CRFParams)}
    unknown = set(crf) - fields
    if unknown:
        raise TypeError(f'unknown CRF parameters {sorted(unknown)}; known: {sorted(fields)}')
    return dataclasses.replace(DEEPLAB_CRF, **dict(crf))


@SEG_MODELS.register_module()
class DenseCRFSegTTAModel(BaseTTAModel):
    """Mean of the softmax over test-time views (mmseg's ``SegTTAModel`` rule), then,
    optionally, a dense CRF on the merged probabilities; the prediction is their argmax.

    Used as ``tta_model`` with mmseg's ``TestTimeAug`` pipeline: multi-scale + flip views,
    or a single view (scale 1, no flip) for "single scale + CRF". Each view's logits arrive
    in the original image frame (mmseg's ``postprocess_result`` resizes and un-flips them).

    Args:
        module: The segmentor (config or module); its checkpoint loads as usual.
        crf: ``None``/``False``: no CRF; ``True``: :data:`DEEPLAB_CRF`; a dict overrides its
            fields. The CRF reads the image (``img_path``, RGB uint8, original size).
        data_preprocessor: Unused (each view goes through the segmentor's own); MMEngine API.

    Shapes:
        per image: views' ``seg_logits`` ``(C, H, W)`` (original frame) -> ``pred_sem_seg``
        ``(1, H, W)`` int64 and ``seg_logits`` = log of the merged (CRF) probabilities
        ``(C, H, W)``; ``gt_sem_seg`` and the metainfo of the first view are kept.
    """

    def __init__(self, module: dict | torch.nn.Module,
                 crf: bool | Mapping | CRFParams | None = None,
                 data_preprocessor: dict | None = None) -> None:
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        self.crf = crf_params(crf)

    def merge_preds(self, data_samples_list: list[list[SegDataSample]]) -> list[SegDataSample]:
        """Merge each image's views; see the class docstring."""
        merged = []
        for views in data_samples_list:
            probs = torch.stack([v.seg_logits.data.float().softmax(dim=0) for v in views])
            probs = probs.mean(dim=0)
            if self.crf is not None:
                image = read_rgb_image(views[0].img_path)
                refined = crf_inference(image, probs.cpu().numpy(), self.crf)
                probs = torch.from_numpy(refined).to(probs.device)
            sample = SegDataSample(metainfo=views[0].metainfo)
            sample.pred_sem_seg = PixelData(data=probs.argmax(dim=0, keepdim=True))
            sample.seg_logits = PixelData(data=probs.clamp_min(1e-12).log())
            if 'gt_sem_seg' in views[0]:
                sample.gt_sem_seg = views[0].gt_sem_seg
            merged.append(sample)
        return merged
