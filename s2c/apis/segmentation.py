"""The segmentation stage: DeepLab trained on pseudo-labels and tested with mmsegmentation.

Train: :func:`train_segmentor` (``tools/train_seg.py``) checks that every training image has
a pseudo-label, then trains with MMEngine's Runner (mmseg scope). Test:
:func:`test_segmentor` (``tools/test_seg.py``) scores a checkpoint on the val ground truth
in one or more test-time modes (:data:`TEST_MODES`), each through mmseg's test loop and
:class:`~s2c.evaluation.segmentation_metric.PerClassIoUMetric`, and writes one per-class
table for all of them.
"""
from __future__ import annotations

import copy
import os
import os.path as osp
from collections.abc import Mapping, Sequence

from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from s2c.datasets.paths import dataset_paths
from s2c.utils.fileio import atomic_save_json, atomic_write

from .train import train

#: Test-time modes: ``name -> (multi-scale + flip views, dense CRF)``.
TEST_MODES: dict[str, tuple[bool, bool]] = {
    'ss': (False, False),        # single scale, the full image
    'ss_crf': (False, True),     # single scale + dense CRF on the probabilities
    'msf': (True, False),        # multi-scale + flip (mean of softmax)
    'msf_crf': (True, True),     # multi-scale + flip + dense CRF
}
MODE_TITLES = {'ss': 'single scale', 'ss_crf': 'single scale + CRF',
               'msf': 'multi-scale + flip', 'msf_crf': 'multi-scale + flip + CRF'}
#: Scales of the multi-scale test (mmseg's VOC ``img_ratios``).
MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def set_pseudo_label_dir(cfg: Config, pseudo_label_dir: str) -> None:
    """Train on the pseudo-label PNGs in ``pseudo_label_dir`` (the folder written by
    ``tools/make_pseudo_labels.py``): sets ``train_dataloader.dataset.data_prefix.seg_map_path``
    to its absolute path (mmseg joins relative paths with ``data_root``)."""
    dataset = cfg.train_dataloader.dataset
    dataset.setdefault('data_prefix', ConfigDict())
    dataset.data_prefix.seg_map_path = osp.abspath(pseudo_label_dir)


def check_pseudo_labels(cfg: Config, max_listed: int = 5) -> int:
    """Check that every image of the training list has a pseudo-label PNG.

    Args:
        cfg: A segmentation config (mmseg dataset: ``data_root``, ``ann_file``,
            ``data_prefix.seg_map_path``).
        max_listed: How many missing names the error lists.

    Returns:
        int: The number of training images (all labelled).

    Raises:
        FileNotFoundError: The folder or some PNGs are missing; the message names the
            folder, the first missing images and the command that writes them.
    """
    paths = dataset_paths(cfg.train_dataloader.dataset)
    names = paths.names()
    folder = paths.seg_dir
    fix = ('make them with python tools/make_pseudo_labels.py CONFIG --cams CAM_DIR --out '
           f'{folder} --split {osp.splitext(osp.basename(paths.split_file))[0]} (CAMs of the '
           'same split from tools/test.py), or point --pseudo-labels at the folder that has them')
    if not osp.isdir(folder):
        raise FileNotFoundError(f'pseudo-label folder {folder} not found: {fix}')
    missing = [n for n in names if not osp.isfile(osp.join(folder, n + '.png'))]
    if missing:
        shown = ', '.join(missing[:max_listed]) + (' ...' if len(missing) > max_listed else '')
        raise FileNotFoundError(
            f'{len(missing)} of {len(names)} training images have no pseudo-label in {folder} '
            f'({shown}): {fix}')
    return len(names)


def train_segmentor(cfg: Config) -> Runner:
    """Check the pseudo-labels (:func:`check_pseudo_labels`), then train with the Runner.

    Args:
        cfg: A config from :func:`s2c.apis.build_train_config` (a ``configs/deeplab`` one).

    Returns:
        Runner: The runner after training.
    """
    check_pseudo_labels(cfg)
    return train(cfg)


def _single_view_tta_pipeline(test_pipeline: Sequence[Mapping]) -> list[dict]:
    """The test pipeline as a one-view ``TestTimeAug`` (for single scale + CRF)."""
    load, rest = dict(test_pipeline[0]), [dict(t) for t in test_pipeline[1:]]
    return [load, dict(type='TestTimeAug', transforms=[[t] for t in rest])]


def _multi_scale_flip_pipeline(test_pipeline: Sequence[Mapping],
                               scales: Sequence[float]) -> list[dict]:
    """Multi-scale + flip views of the full-image test pipeline (mmseg's TTA layout)."""
    load = dict(test_pipeline[0])
    return [load, dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=s, keep_ratio=True) for s in scales],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])]


def build_test_config(cfg: Config, checkpoint: str, mode: str = 'ss',
                      scales: Sequence[float] = MS_SCALES,
                      pred_dir: str | None = None) -> Config:
    """A copy of ``cfg`` that tests ``checkpoint`` in one test-time ``mode``.

    Args:
        cfg: A segmentation config; its ``test_pipeline`` must be the full-image one
            (``LoadImageFromFile``, ``LoadAnnotations``, ``PackSegInputs``).
        checkpoint: Checkpoint file (``load_from``).
        mode: A key of :data:`TEST_MODES`.
        scales: Scales of the multi-scale modes.
        pred_dir: When given, the predictions are written there as VOC-palette PNGs.

    Returns:
        Config: The test config (the model wrapped in ``DenseCRFSegTTAModel`` for every
        mode but ``ss``).

    Raises:
        KeyError: On an unknown mode.
        FileNotFoundError: When ``checkpoint`` does not exist.
    """
    if mode not in TEST_MODES:
        raise KeyError(f'unknown test mode {mode!r}; choose from {sorted(TEST_MODES)}')
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    multi_scale, crf = TEST_MODES[mode]
    test_cfg = copy.deepcopy(cfg)
    test_cfg.load_from = checkpoint
    test_cfg.resume = False
    dataset = test_cfg.test_dataloader.dataset
    pipeline = dataset.pipeline
    if multi_scale:
        dataset.pipeline = _multi_scale_flip_pipeline(pipeline, scales)
    elif crf:
        dataset.pipeline = _single_view_tta_pipeline(pipeline)
    if multi_scale or crf:
        test_cfg.model = dict(type='DenseCRFSegTTAModel', module=test_cfg.model, crf=crf)
    if pred_dir is not None:
        test_cfg.test_evaluator = dict(test_cfg.test_evaluator, pred_dir=pred_dir)
    return test_cfg


def test_segmentor(cfg: Config, checkpoint: str, modes: Sequence[str] = ('ss', 'msf', 'msf_crf'),
                   scales: Sequence[float] = MS_SCALES,
                   out_dir: str | None = None) -> dict[str, dict[str, float]]:
    """Score ``checkpoint`` on the test split in each test-time mode.

    Each mode is one run of mmseg's test loop. The per-class table of all modes is written
    to ``<work_dir>/test_results.md`` and ``test_results.json`` (IoU in percent).

    Args:
        cfg: A segmentation config (``work_dir`` set).
        checkpoint: The trained segmentor.
        modes: Keys of :data:`TEST_MODES`, run in order.
        scales: Scales of the multi-scale modes.
        out_dir: When given, each mode's predictions go to ``<out_dir>/<mode>/<name>.png``
            (VOC palette).

    Returns:
        dict: ``mode -> metrics`` (``mIoU``, ``aAcc``, ``mAcc``, ``IoU.<class>``).
    """
    results = {}
    for mode in modes:
        pred_dir = osp.join(out_dir, mode) if out_dir else None
        runner = Runner.from_cfg(build_test_config(cfg, checkpoint, mode, scales, pred_dir))
        results[mode] = {k: float(v) for k, v in runner.test().items()}
    table = results_table(results)
    print(table)
    os.makedirs(cfg.work_dir, exist_ok=True)
    with atomic_write(osp.join(cfg.work_dir, 'test_results.md')) as tmp:
        with open(tmp, 'w') as f:
            f.write(table + '\n')
    atomic_save_json(osp.join(cfg.work_dir, 'test_results.json'),
                     dict(checkpoint=osp.abspath(checkpoint), results=results))
    return results


def results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table: one row per class (IoU %), then mIoU; one column per test mode."""
    modes = list(results)
    classes = []
    for metrics in results.values():
        classes += [k[4:] for k in metrics if k.startswith('IoU.') and k[4:] not in classes]
    lines = ['| class | ' + ' | '.join(MODE_TITLES.get(m, m) for m in modes) + ' |',
             '|---|' + '---:|' * len(modes)]
    for name in classes:
        cells = [_fmt(results[m].get(f'IoU.{name}')) for m in modes]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines.append('| **mIoU** | ' + ' | '.join(f'**{_fmt(results[m].get("mIoU"))}**'
                                             for m in modes) + ' |')
    return '\n'.join(lines)


def _fmt(value: float | None) -> str:
    return '-' if value is None else f'{float(value):.2f}'


__all__ = ['MS_SCALES', 'TEST_MODES', 'build_test_config', 'check_pseudo_labels',
           'results_table', 'set_pseudo_label_dir', 'test_segmentor', 'train_segmentor']
