"""Loading transforms: image, SE map (SAM segments) and ground-truth label map."""
from __future__ import annotations

import os.path as osp

from s2c.registry import TRANSFORMS
from s2c.structures import Geometry
from s2c.utils.image_io import read_rgb_image
from s2c.utils.label_io import load_label_png
from s2c.utils.se_map_io import load_se_map


@TRANSFORMS.register_module()
class LoadImageFromFile:
    """Read ``results['img_path']`` into ``results['img']`` ((H, W, 3) uint8 RGB).

    Also sets ``ori_shape``/``img_shape`` ``(H, W)`` and an identity
    ``geometry`` record (:class:`~s2c.structures.Geometry`).
    """

    def __call__(self, results: dict) -> dict:
        img = read_rgb_image(results['img_path'])
        h, w = img.shape[:2]
        results['img'] = img
        results['ori_shape'] = (h, w)
        results['img_shape'] = (h, w)
        results['geometry'] = Geometry.identity(h, w)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@TRANSFORMS.register_module()
class LoadSEMap:
    """Read the cached SE map ``results['se_map_path']`` into ``results['se_map']``.

    The SE map is an ``(H, W)`` uint16 PNG at original resolution (0 = no
    segment, 1..K segments), written by ``tools/cache_se_maps.py``. Optional:
    when the dataset has no ``se_map_dir`` (no ``se_map_path``) it does nothing,
    so one pipeline serves the CAM baseline and S2C (SSC reports missing SE maps).

    Raises:
        FileNotFoundError: When the SE map is missing (says how to build it).
        ValueError: When its size differs from the image's.
    """

    def __call__(self, results: dict) -> dict:
        path = results.get('se_map_path')
        if path is None:
            return results
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'SE map {path} not found; build the cache with '
                'tools/cache_se_maps.py CONFIG (see README, "SAM caches")')
        se_map = load_se_map(path)
        if se_map.shape != tuple(results['ori_shape']):
            raise ValueError(f'SE map {path} has size {se_map.shape} but the image has '
                             f'{tuple(results["ori_shape"])}; the cache was built from other '
                             'images: rebuild it with --overwrite')
        results['se_map'] = se_map
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


@TRANSFORMS.register_module()
class LoadAnnotations:
    """Read the ground-truth label PNG ``results['seg_map_path']`` into ``results['gt_seg']``.

    ``gt_seg`` is ``(H, W)`` uint8 (0 background, 1..C classes, 255 ignore);
    used only for evaluation, never for training (mmseg's name for the
    ground-truth loader; the SAM segments are :class:`LoadSEMap`).
    """

    def __call__(self, results: dict) -> dict:
        path = results.get('seg_map_path')
        if path is None:
            raise KeyError('LoadAnnotations needs results["seg_map_path"]; give the dataset '
                           "seg_dir='SegmentationClass'")
        if not osp.isfile(path):
            raise FileNotFoundError(f'ground-truth label map {path} not found')
        gt = load_label_png(path)
        if gt.shape != tuple(results['ori_shape']):
            raise ValueError(f'ground truth {path} has size {gt.shape}, image has '
                             f'{tuple(results["ori_shape"])}')
        results['gt_seg'] = gt
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
