"""Packing a transformed sample into ``inputs`` + ``data_samples`` for the model."""
from __future__ import annotations

import numpy as np
import torch

from s2c.registry import TRANSFORMS
from s2c.utils.segments import renumber_segments


@TRANSFORMS.register_module()
class RenumberSegmentsBeforeCrop:
    """Official S2C segment numbering: over the whole (rescaled, flipped) image, before the crop.

    Official ``voc12/data.py`` (``apply_tf_se``) maps the SE map through
    ``np.searchsorted(np.unique(se), se)`` after the random rescale and flip and
    *before* the random crop: ids are ``0..K_image - 1`` in increasing order, so a
    crop keeps the ids of the whole image (gaps where a segment fell outside the
    crop), and the smallest id becomes 0 (= ignored) even when the image has no
    uncovered pixel. With ``SSCLoss(negatives='official')`` the gaps add zero
    logits to the softmax, as in the official code. Place it between
    ``RandomHorizontalFlip`` and ``RandomCrop``; :class:`PackClsInputs` then keeps
    the ids as they are (``data_samples['se_ids'] == 'image'``).

    Keys: ``se_map`` ``(H, W)`` integer, optional: without it (a config whose
    dataset has no ``se_map_dir``, e.g. the CAM baseline made from an S2C config by
    removing ``model.ssc``) it does nothing, as :class:`LoadSEMap`. Modified:
    ``se_map`` (int64), added: ``se_ids = 'image'``.

    Args:
        uint8_ids: Also reproduce the official ``(se + 1).astype(np.uint8)``
            (``voc12/data.py`` 254) before numbering: ids are taken modulo 256,
            so with 256 or more masks, mask ``k`` and mask ``k + 256`` share a
            segment and id 256 falls into "no segment". Exact with SE maps in
            the official numbering (``se_maps.overlap='first_on_top'``).
            Default False.
    """

    def __init__(self, uint8_ids: bool = False) -> None:
        self.uint8_ids = bool(uint8_ids)

    def __call__(self, results: dict) -> dict:
        if 'se_map' not in results:
            return results
        se = results['se_map']
        if self.uint8_ids:
            se = se % 256
        results['se_map'] = np.searchsorted(np.unique(se), se).astype(np.int64)
        results['se_ids'] = 'image'
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(uint8_ids={self.uint8_ids})'


@TRANSFORMS.register_module()
class PackClsInputs:
    """Pack ``results`` into ``dict(inputs=..., data_samples=...)``.

    ``inputs``: ``(3, H, W)`` float32 tensor. ``data_samples``: a dict with
    ``name``, ``img_path``, ``gt_label`` (``(C,)`` float32 multi-hot),
    ``ori_shape``, ``img_shape``, ``geometry`` and, when present, ``se_map``
    (``(H, W)`` int64 renumbered 1..K over the crop, 0 = none/padding; kept as
    numbered by :class:`RenumberSegmentsBeforeCrop` when that ran) with ``se_ids``
    (``'crop'`` or ``'image'``), ``valid`` (``(H, W)`` bool non-padding mask) and
    ``gt_seg`` (``(H, W)`` uint8, evaluation only).
    """

    def __call__(self, results: dict) -> dict:
        img = results['img']
        if img.dtype == np.uint8:
            raise TypeError('PackClsInputs expects a normalised float image; add Normalize '
                            'before it in the pipeline')
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
        sample = dict(name=results['name'], img_path=results['img_path'],
                      gt_label=torch.as_tensor(results['gt_label'], dtype=torch.float32),
                      ori_shape=tuple(results['ori_shape']), img_shape=tuple(img.shape[:2]),
                      geometry=results['geometry'])
        if 'se_map' in results:
            sample['se_ids'] = results.get('se_ids', 'crop')
            se = results['se_map']
            se = se.astype(np.int64) if sample['se_ids'] == 'image' else renumber_segments(se)
            sample['se_map'] = torch.from_numpy(np.ascontiguousarray(se))
        if 'valid' in results:
            sample['valid'] = torch.from_numpy(np.ascontiguousarray(results['valid']))
        if 'gt_seg' in results:
            sample['gt_seg'] = np.ascontiguousarray(results['gt_seg'])
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
