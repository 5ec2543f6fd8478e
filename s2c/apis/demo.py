"""The embedded demo behind ``make demo``: synthetic data -> CAM training -> mIoU report."""
from __future__ import annotations

import os.path as osp
import time

import numpy as np

from s2c.caches import embedding_dir, run_embedding_job, run_se_map_job, se_map_dir
from s2c.datasets import dataset_paths, load_cls_labels
from s2c.datasets.demo import make_demo_dataset
from s2c.evaluation import trivial_baselines
from s2c.utils import load_label_png

from .config import build_train_config
from .train import train

DEMO_ROOT = 'data/demo'


def ensure_demo_data(data_root: str = DEMO_ROOT, seed: int = 0) -> None:
    """Generate the demo dataset unless ``data_root`` already holds one (with instance masks;
    an older one without them is regenerated: the same images, plus the instance masks)."""
    if osp.isfile(osp.join(data_root, 'cls_labels.npy')) and \
            osp.isdir(osp.join(data_root, 'SegmentationObject')):
        print(f'[demo] using the demo dataset in {data_root}')
        return
    print(f'[demo] generating the synthetic demo dataset in {data_root} (seed {seed})')
    summary = make_demo_dataset(data_root, seed=seed)
    print(f'[demo] {summary["num_train"]} train / {summary["num_val"]} val images, '
          f'images per class {summary["images_per_class"]}')


def demo_baselines(data_root: str = DEMO_ROOT, split: str = 'val') -> dict[str, float]:
    """mIoU of the two label-free baselines on the demo split (percent)."""
    paths = dataset_paths(dict(data_root=data_root), split=split)
    labels = load_cls_labels(paths.cls_labels_file)
    pairs = [(load_label_png(osp.join(paths.seg_dir, n + '.png')), np.nonzero(labels[n])[0])
             for n in paths.names()]
    num_classes = len(next(iter(labels.values()))) + 1
    return trivial_baselines(pairs, num_classes)


def build_demo_caches(cfg) -> None:
    """Build (or complete) the SE-map and embedding caches a training config reads.

    Both jobs are resumable: existing entries are skipped, so a second
    ``make demo`` costs nothing here.
    """
    se_dir, emb_dir = se_map_dir(cfg), embedding_dir(cfg)
    if se_dir:
        print(f'[demo] SE maps ({cfg.se_maps.provider.type}) -> {se_dir}')
        summary = run_se_map_job(cfg)
        if not summary.ok:
            raise RuntimeError('SE map cache incomplete:\n' + summary.format())
    if emb_dir:
        print(f'[demo] SAM embeddings ({cfg.sam.model_type}) -> {emb_dir}')
        summary = run_embedding_job(cfg)
        if not summary.ok:
            raise RuntimeError('embedding cache incomplete:\n' + summary.format())


def run_demo(configs: dict[str, str | dict], work_root: str = 'work_dirs',
             data_root: str = DEMO_ROOT) -> dict[str, float]:
    """Train each demo config and print its CAM mIoU next to the baselines.

    Args:
        configs: Display name -> config path, or ``dict(config=..., cfg_options=...,
            work_dir=...)`` for a variant of a config; trained in order.
        work_root: Parent of the work dirs (``<work_root>/<work_dir or config name>``).
        data_root: Demo dataset root (generated if absent).

    Returns:
        dict: Display name -> CAM mIoU (percent) on the demo val split, plus the baselines.
    """
    ensure_demo_data(data_root)
    results, times = {}, {}
    for name, entry in configs.items():
        start = time.time()
        entry = dict(config=entry) if isinstance(entry, str) else dict(entry)
        config = entry['config']
        work_dir = osp.join(work_root, entry.get('work_dir')
                            or osp.splitext(osp.basename(config))[0])
        print(f'[demo] training {name}: {config} -> {work_dir}')
        cfg = build_train_config(config, work_dir=work_dir, data_root=data_root,
                                 cfg_options=entry.get('cfg_options'))
        build_demo_caches(cfg)
        runner = train(cfg)
        results[name] = float(runner.message_hub.get_scalar('val/cam/mIoU').current())
        times[name] = time.time() - start
    baselines = demo_baselines(data_root)
    print('\n[demo] CAM mIoU on the demo val split (background threshold searched):')
    for name, miou in results.items():
        print(f'  {name:<50}{miou:6.2f}   ({times[name] / 60:.1f} min)')
    print(f'  {"baseline: all background":<50}{baselines["all_background"]:6.2f}')
    print(f'  {"baseline: labelled class everywhere":<50}{baselines["whole_image"]:6.2f}')
    results.update({f'baseline_{k}': v for k, v in baselines.items()})
    return results
