"""CAM inference entry point behind ``tools/test.py``."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

import torch
from mmengine.config import Config

from s2c.cam.cam_io import cam_manifest, prepare_cam_dir
from s2c.cam.inference import evaluate_cam_dir, infer_cam_dir, save_json
from s2c.cam.pseudo_label_job import dataset_paths
from s2c.datasets import load_cls_labels, read_split
from s2c.models.backbones.resnet38d import load_torch_file
from s2c.registry import MODELS
from s2c.utils import resolve_device


def build_classifier(cfg: Config, checkpoint: str, device: str | torch.device = 'auto'):
    """Build ``cfg.model`` and load a checkpoint strictly, in eval mode on ``device``.

    Accepts our checkpoints (``{'state_dict': ...}``, written by training) and
    official S2C ``XXXnet_main.pth`` files (auto-detected).

    Raises:
        FileNotFoundError: When ``checkpoint`` does not exist.
        KeyError: On missing/unexpected keys (names listed).
    """
    import s2c.models  # noqa: F401  (registers the models)
    model_cfg = cfg.model.copy()
    model_cfg.pop('ssc', None)
    model_cfg.pop('cpm', None)  # inference needs neither loss
    if model_cfg.get('backbone', {}).get('pretrained'):
        model_cfg['backbone'] = dict(model_cfg['backbone'], pretrained=None)
    model = MODELS.build(model_cfg)
    state = load_torch_file(checkpoint)
    if 'state_dict' in state:
        from s2c.models.backbones.resnet38d import load_state_dict_strict
        weights = {k[len('module.'):] if k.startswith('module.') else k: v
                   for k, v in state['state_dict'].items()}
        load_state_dict_strict(model, weights, checkpoint)
    else:
        model.load_official_checkpoint(checkpoint)
    return model.to(resolve_device(device)).eval()


def run_cam_inference(cfg: Config, checkpoint: str, *, split: str = 'train',
                      out_dir: str | None = None, scales: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
                      flip: bool = True, overwrite: bool = False, device: str = 'auto',
                      evaluate: bool = True) -> dict:
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
        evaluate: Score against ``SegmentationClass`` when it exists.

    Raises:
        FileNotFoundError: Missing checkpoint, split list or ``cls_labels``.
        s2c.cam.CamManifestMismatch: ``out_dir`` holds CAMs of another checkpoint
            or other scales/flip (or of unknown origin) and ``overwrite`` is False.

    Returns:
        dict: Inference summary (``done``/``skipped``/``failed``) and, when
        evaluated, the :func:`~s2c.cam.inference.evaluate_cam_dir` result under ``eval``
        (also written to ``<out_dir>/cam_eval.json``).
    """
    ds = cfg.test_dataloader.dataset
    paths = dataset_paths(ds, split=split)
    names = read_split(paths.split_file)
    root = paths.data_root
    labels = load_cls_labels(paths.cls_labels  # None: let the loader name the missing file
                             or osp.join(root, ds.get('cls_labels') or 'cls_labels.npy'))
    if out_dir is None:
        work_dir = cfg.get('work_dir') or osp.join('work_dirs', 'cams')
        out_dir = osp.join(work_dir, f'cams_{osp.splitext(osp.basename(paths.split_file))[0]}')
    model = build_classifier(cfg, checkpoint, device)
    # the folder is keyed by what makes the CAMs: never resume into another model's CAMs
    from s2c.sam.build import checkpoint_sha256  # hashed once per file, then remembered
    prepare_cam_dir(out_dir, cam_manifest(checkpoint_sha256(checkpoint), scales, flip),
                    overwrite)
    summary = infer_cam_dir(model, names, paths.img_dir, labels, out_dir,
                            img_suffix=paths.img_suffix, scales=scales, flip=flip,
                            overwrite=overwrite)
    summary['out_dir'] = out_dir
    gt_dir = osp.join(root, ds.get('seg_dir') or 'SegmentationClass')
    if evaluate and osp.isdir(gt_dir):
        classes = cfg.get('test_dataloader').dataset.get('classes')
        if classes is None:
            from s2c.datasets import VOC_CLASSES
            classes = VOC_CLASSES
        ok = [n for n in names if n not in summary['failed']]
        result = evaluate_cam_dir(out_dir, gt_dir, ok, num_classes=len(classes) + 1,
                                  class_names=classes)
        save_json(osp.join(out_dir, 'cam_eval.json'),
                  {k: v for k, v in result.items() if k not in ('table', 'no_gt')}
                  | dict(checkpoint=checkpoint, split=split, scales=list(scales), flip=flip,
                         num_no_gt=len(result['no_gt'])))
        summary['eval'] = result
    return summary
