"""CAM inference entry point behind ``tools/test.py``."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from mmengine.config import Config

from s2c.cam import S2C_SCALES, cam_manifest, infer_cam_dir, prepare_cam_dir
from s2c.datasets import dataset_class_names, dataset_paths, load_cls_labels
from s2c.datasets.degradations import degrade, parse_degradations
from s2c.evaluation import evaluate_cam_dir
from s2c.models.backbones.resnet38d import is_bn_counter
from s2c.registry import MODELS
from s2c.utils import (
    atomic_save_json,
    checkpoint_sha256,
    load_state_dict_strict,
    load_torch_file,
    resolve_device,
)
from s2c.utils.job_summary import JobSummary


@dataclass
class CamInferenceResult:
    """What :func:`run_cam_inference` did.

    Attributes:
        summary: Written / skipped / failed CAM files (``summary.out_dir`` = the folder).
        evaluation: The :func:`~s2c.evaluation.evaluate_cam_dir` result, or ``None``
            when not evaluated (no ground-truth folder, or ``evaluate=False``).
    """

    summary: JobSummary
    evaluation: dict | None = None


def build_classifier(cfg: Config, checkpoint: str, device: str | torch.device = 'auto'):
    """Build ``cfg.model`` without its SSC/CPM parts and load a checkpoint strictly.

    Accepts our checkpoints (``{'state_dict': ...}``, written by training) and
    official S2C ``XXXnet_main.pth`` files (auto-detected).

    Args:
        cfg: Config with ``model``.
        checkpoint: The weights file.
        device: ``'auto'``, ``'cpu'`` or ``'cuda'``.

    Returns:
        The classifier in eval mode on ``device``.

    Raises:
        FileNotFoundError: When ``checkpoint`` does not exist.
        RuntimeError: When it is not a readable torch file.
        KeyError / ValueError: On missing/unexpected keys or wrong shapes (names listed).
    """
    model_cfg = cfg.model.copy()
    model_cfg.pop('ssc', None)
    model_cfg.pop('cpm', None)  # inference needs neither loss
    if model_cfg.get('backbone', {}).get('pretrained'):
        model_cfg['backbone'] = dict(model_cfg['backbone'], pretrained=None)
    model = MODELS.build(model_cfg)
    state = load_torch_file(checkpoint, 'classifier checkpoint')
    if isinstance(state, dict) and 'state_dict' in state:
        weights = {k[len('module.'):] if k.startswith('module.') else k: v
                   for k, v in state['state_dict'].items()}
        load_state_dict_strict(model, weights, checkpoint, optional=is_bn_counter)
    else:
        model.load_official_checkpoint(checkpoint)
    return model.to(resolve_device(device)).eval()


def run_cam_inference(cfg: Config, checkpoint: str, *, split: str = 'train',
                      out_dir: str | None = None, scales: Sequence[float] = S2C_SCALES,
                      flip: bool = True, overwrite: bool = False, device: str = 'auto',
                      evaluate: bool = True, progress: bool = True,
                      degradation: str | None = None,
                      degradation_seed: int = 0) -> CamInferenceResult:
    """Multi-scale CAMs for a split, then CAM mIoU with the background-threshold search.

    Args:
        cfg: Config (``model`` and ``test_dataloader.dataset`` are used).
        checkpoint: Trained classifier.
        split: Split name under ``ImageSets/Segmentation`` or a list file.
        out_dir: CAM folder (default ``<work_dir>/cams_<split>``).
        scales: Inference scales.
        flip: Add mirrored views.
        overwrite: Recompute existing CAM files.
        device: ``'auto'``, ``'cpu'`` or ``'cuda'``.
        evaluate: Score against the ground truth folder when it exists.
        progress: Show progress bars.
        degradation: ``'NAME:LEVEL'``: CAMs of the degraded images
            (:mod:`s2c.datasets.degradations`; part of the folder's manifest).
        degradation_seed: Seed of its random parts.

    Returns:
        CamInferenceResult: The inference summary and, when evaluated, the
        :func:`~s2c.evaluation.evaluate_cam_dir` result (also written to
        ``<out_dir>/cam_eval.json``).

    Raises:
        FileNotFoundError: Missing checkpoint, split list or ``cls_labels``.
        ManifestMismatchError: ``out_dir`` holds CAMs of another checkpoint or
            other scales/flip (or of unknown origin) and ``overwrite`` is False.
    """
    ds = cfg.test_dataloader.dataset
    paths = dataset_paths(ds, split=split)
    names = paths.names()
    labels = load_cls_labels(paths.cls_labels_file)
    if out_dir is None:
        work_dir = cfg.get('work_dir') or osp.join('work_dirs', 'cams')
        out_dir = osp.join(work_dir, f'cams_{osp.splitext(osp.basename(paths.split_file))[0]}')
    model = build_classifier(cfg, checkpoint, device)
    transform, degraded = None, None
    if degradation:
        (deg_name, level), = parse_degradations([degradation])
        degraded = dict(name=deg_name, level=level, seed=int(degradation_seed))

        def transform(image_id: str, image: np.ndarray) -> np.ndarray:
            return degrade(image, deg_name, level, seed=degradation_seed, key=image_id)

    # the folder is keyed by what makes the CAMs: never resume into another model's CAMs
    prepare_cam_dir(out_dir, cam_manifest(checkpoint_sha256(checkpoint), scales, flip,
                                          dict(checkpoint=osp.abspath(checkpoint)), degraded),
                    overwrite)
    summary = infer_cam_dir(model, names, paths.img_dir, labels, out_dir,
                            img_suffix=paths.img_suffix, scales=scales, flip=flip,
                            overwrite=overwrite, progress=progress, image_transform=transform)
    result = CamInferenceResult(summary)
    if evaluate and osp.isdir(paths.seg_dir):
        classes = dataset_class_names(ds)
        failed = summary.failed
        ok = [n for n in names if n not in failed]
        ev = evaluate_cam_dir(out_dir, paths.seg_dir, ok, num_classes=len(classes) + 1,
                              class_names=classes, progress=progress)
        atomic_save_json(osp.join(out_dir, 'cam_eval.json'),
                         {k: v for k, v in ev.items() if k not in ('table', 'no_gt')}
                         | dict(checkpoint=checkpoint, split=split, scales=list(scales),
                                flip=flip, num_no_gt=len(ev['no_gt'])))
        result.evaluation = ev
    return result
