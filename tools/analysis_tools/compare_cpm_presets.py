"""How much the official CPM behaviours change CPM's labels (a script, not a test).

For training batches of a dataset (the config's own augmentation, seeded), CPM's
pseudo-labels are computed with the default CPM block of ``CONFIG`` and with
every CPM option that the ``--official`` preset sets differently, alone and all
together, on the same crops, CAMs and SAM. Printed per variant: the percentage
of crop pixels whose CPM target differs from the default's (mean, standard
deviation, min and max over the batches, i.e. per training iteration), over all
pixels (padding counts: the default ignores it, the official labels it) and
over non-padding pixels only.

CAMs: with ``--checkpoint`` the classifier's multi-scale CAMs (CPM step 1);
without, a stand-in for a trained CAM made from the ground truth of the crop
(``--data-root`` must hold ``SegmentationClass``): per present class, the
distance transform of its mask, Gaussian-blurred (sigma 4 px) and divided by
its maximum, so that the peaks lie inside the objects, several per large or
elongated object.

The default (cached) variants need an embedding cache of the images: it is
built under ``--work-dir`` with the config's ``sam`` block (resumable).

Example (the shared VOC samples, tiny random SAMs)::

    python tools/analysis_tools/compare_cpm_presets.py \\
        configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py \\
        --data-root VOCdevkit/VOC2012 --cls-labels cls_labels.npy \\
        --ann-file ImageSets/Segmentation/train.txt --batches 20 --work-dir work_dirs/cmp \\
        --cfg-options sam.model_type=tiny sam.checkpoint=None sam.device=cpu \\
            model.cpm.backend.model_type=tiny model.cpm.backend.checkpoint=None
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import DictAction
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from s2c.apis import load_config  # noqa: E402
from s2c.apis.cli import cli_entry  # noqa: E402
from s2c.apis.test import build_classifier  # noqa: E402
from s2c.caches import run_embedding_job  # noqa: E402
from s2c.cam import batch_multiscale_cams, standin_cam  # noqa: E402
from s2c.registry import DATASETS, MODELS  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OFFICIAL = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256_official.py')


def official_variants(default_cpm: dict, official_cpm: dict) -> dict[str, dict]:
    """CPM overrides: each official option that differs alone, then all of them.

    Returns:
        dict: variant name (``'key=value'`` or ``'all official'``) -> overrides.
    """
    diff = {k: v for k, v in official_cpm.items()
            if k not in ('embedding_dir', 'backend') and default_cpm.get(k) != v}
    variants = {f'{k}={v}': {k: v} for k, v in diff.items()}
    variants['all official'] = diff
    return variants


def gt_cams(samples: list[dict], labels: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` CAM stand-ins in [0, 1) from the crops' ground truth
    (:func:`s2c.cam.standin_cam`)."""
    b, c = labels.shape
    h, w = samples[0]['gt_seg'].shape
    cams = np.zeros((b, c, h, w), np.float32)
    for i, sample in enumerate(samples):
        for k in torch.nonzero(labels[i] > 0.5).flatten().tolist():
            cams[i, k] = standin_cam(sample['gt_seg'] == k + 1)
    return torch.from_numpy(cams)


def build_cpm(cfg, overrides: dict):
    """CPM of ``cfg.model.cpm`` with ``overrides``."""
    cpm_cfg = dict(cfg.model.cpm)
    cpm_cfg.update(overrides)
    return MODELS.build(cpm_cfg)


def compare(cfg, official_cfg, batches: int, batch_size: int, work_dir: str,
            checkpoint: str | None = None, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per-batch percentages of CPM target pixels that differ from the default's.

    Returns:
        dict: variant -> ``dict(all=(batches,), image=(batches,))`` percentages;
        with ``'embedding_source=online'`` among the variants, also
        ``'all official vs embedding_source=online'`` (the other official options
        on top of the online source).
    """
    cfg.model.cpm.embedding_dir = osp.join(work_dir, 'sam_embeddings')
    summary = run_embedding_job(cfg, num_workers=0)  # the training split
    if not summary.ok:
        raise RuntimeError(f'embedding cache under {work_dir} is incomplete: {summary}')
    ds_cfg = dict(cfg.train_dataloader.dataset)
    ds_cfg.update(se_map_dir=None, seg_dir='SegmentationClass')
    pipeline = [t for t in ds_cfg['pipeline'] if t['type'] != 'LoadSEMap']
    pipeline.insert(1, dict(type='LoadAnnotations'))
    ds_cfg['pipeline'] = pipeline
    dataset = DATASETS.build(ds_cfg)
    model = build_classifier(cfg, checkpoint, device='cpu') if checkpoint else None
    default = build_cpm(cfg, {})
    variants = {name: build_cpm(cfg, o)
                for name, o in official_variants(dict(cfg.model.cpm),
                                                 dict(official_cfg.model.cpm)).items()}
    np.random.seed(seed)
    torch.manual_seed(seed)
    order = np.random.default_rng(seed)
    # the official options other than the embedding source, measured on the online source
    online = 'embedding_source=online'
    pairs = {name: (name, None) for name in variants}
    if online in variants and len(variants) > 2:
        pairs[f'all official vs {online}'] = ('all official', online)
    out = {name: dict(all=[], image=[]) for name in pairs}
    for _ in tqdm(range(batches), desc='batches'):
        items = [dataset[int(i)] for i in order.choice(len(dataset), batch_size)]
        inputs = torch.stack([it['inputs'] for it in items])
        samples = [it['data_samples'] for it in items]
        labels = torch.stack([s['gt_label'] for s in samples])
        with torch.no_grad():
            cams = (gt_cams(samples, labels) if model is None
                    else batch_multiscale_cams(model, inputs, labels, default.scales))
        targets = {name: cpm.refine(cams, labels, samples, inputs)
                   for name, cpm in [(None, default), *variants.items()]}
        valid = torch.stack([s['valid'] for s in samples])
        for name, (a, b) in pairs.items():
            diff = targets[a] != targets[b]
            out[name]['all'].append(100.0 * diff.float().mean().item())
            out[name]['image'].append(100.0 * diff[valid].float().mean().item())
    return {name: {k: np.asarray(v) for k, v in d.items()} for name, d in out.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the default S2C config')
    parser.add_argument('--official', default=OFFICIAL, help='the official preset config')
    parser.add_argument('--data-root', required=True, help='VOCdevkit/VOC2012')
    parser.add_argument('--cls-labels', help='cls_labels.npy (default: the config\'s)')
    parser.add_argument('--ann-file', help='image list (default: the config\'s)')
    parser.add_argument('--checkpoint', help='classifier weights (default: GT CAM stand-ins)')
    parser.add_argument('--batches', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', default='work_dirs/compare_cpm_presets')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for both configs (e.g. the tiny SAMs)')
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    args = parse_args(argv)
    cfgs = [load_config(path, cfg_options=args.cfg_options, data_root=args.data_root)
            for path in (args.config, args.official)]
    for cfg in cfgs:
        ds = cfg.train_dataloader.dataset
        if args.cls_labels:
            ds.cls_labels = osp.abspath(args.cls_labels)
        if args.ann_file:
            ds.ann_file = args.ann_file
    result = compare(*cfgs, batches=args.batches, batch_size=args.batch_size,
                     work_dir=args.work_dir, checkpoint=args.checkpoint, seed=args.seed)
    cams = 'classifier CAMs' if args.checkpoint else 'GT CAM stand-ins'
    print(f'\nCPM target pixels that differ from the default, % per iteration '
          f'({args.batches} batches of {args.batch_size}, {cams}):')
    print(f'{"variant":44s} {"all pixels mean+-std [min, max]":34s} non-padding mean')
    for name, d in result.items():
        a = d['all']
        print(f'{name:44s} {a.mean():6.2f} +- {a.std():5.2f} [{a.min():5.2f}, {a.max():5.2f}]'
              f'{"":9s}{d["image"].mean():6.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
