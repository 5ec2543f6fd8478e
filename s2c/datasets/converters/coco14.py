"""Prepare MS-COCO 2014 for WSSS: semantic masks, image lists and image-level labels.

Input (``ROOT``)::

    train2014/COCO_train2014_<12-digit id>.jpg     val2014/...
    annotations/instances_{train,val}2014.json

Output (under ``ROOT``)::

    SegmentationClass/{train2014,val2014}/<name>.png   VOC-palette PNG, 0 background,
                                                       1..80 classes, 255 ignore
    SegmentationClass/coco14_id_map.json               COCO category id -> label, name
    ImageSets/Segmentation/{train,val}.txt             images with >= 1 annotation
    cls_labels.npy                                     name -> (80,) float32 multi-hot

Rules (documented choices, the widely used coco2voc order):

* Labels are contiguous: 0 background, ``1..K`` the annotation file's category ids in
  increasing order (COCO: 80 ids in 1..90).
* Instances are painted in decreasing ``area`` order (the annotation's ``area`` field), so
  the smallest instance ends on top where instances overlap; equal areas keep annotation-id
  order.
* Crowd regions (``iscrowd=1``, RLE) are painted as their class in the same order; with
  ``crowd_ignore`` they are painted 255 instead (smaller instances on top keep their class).
* Images without any annotation are left out of the lists (COCO 2014: 82,081 train and
  40,137 val images remain). An image's label holds every annotated class, crowd included.

The job is resumable (existing PNGs are kept unless ``overwrite``; every file is written to
a temporary name and renamed) and runs on CPU workers that share the loaded annotations.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from s2c.utils.fileio import atomic_save_json
from s2c.utils.job_summary import FailureLog
from s2c.utils.label_io import save_label_png
from s2c.utils.workers import worker_pool

from ..cls_labels import load_cls_labels, save_cls_labels

try:  # optional dependency (extra ``coco``); reported when used
    from pycocotools.coco import COCO
except ImportError as _err:  # pragma: no cover - install problem
    COCO, _COCO_ERROR = None, _err

SPLITS = ('train2014', 'val2014')
LIST_NAMES = {'train2014': 'train', 'val2014': 'val'}
SPLIT_DIR = 'ImageSets/Segmentation'
MASK_DIR = 'SegmentationClass'
ID_MAP_FILE = 'coco14_id_map.json'
IGNORE = 255


class COCOLayoutError(FileNotFoundError):
    """The COCO folder does not have the expected layout (nothing was written)."""


@dataclass
class COCO14ConvertSummary:
    """Outcome of :func:`convert_coco14`.

    Attributes:
        splits: Split -> images listed (with at least one annotation).
        skipped_no_annotation: Split -> images of the annotation file without any annotation.
        written: Masks written in this run.
        existing: Masks already there (kept).
        num_classes: Foreground classes ``K``.
        files: Files written besides the masks.
        failures: Images whose mask could not be made (reason ``bad_annotation``,
            ``missing_image``) or whose count check failed.
    """

    splits: dict[str, int] = field(default_factory=dict)
    skipped_no_annotation: dict[str, int] = field(default_factory=dict)
    written: int = 0
    existing: int = 0
    num_classes: int = 0
    files: list[str] = field(default_factory=list)
    failures: FailureLog = field(default_factory=FailureLog)

    @property
    def ok(self) -> bool:
        """True when no image failed."""
        return self.failures.count == 0


def check_coco_root(root: str, splits: Sequence[str] = SPLITS) -> None:
    """Check the input layout before anything is written.

    Raises:
        COCOLayoutError: Naming the missing folder or annotation file and the layout.
        ImportError: When pycocotools is missing.
    """
    if COCO is None:  # pragma: no cover - install problem
        raise ImportError('the COCO converter needs pycocotools: pip install pycocotools '
                          '(or pip install -e .[coco])') from _COCO_ERROR
    layout = ('ROOT must hold train2014/, val2014/ and annotations/instances_{train,val}'
              '2014.json (the COCO 2014 downloads, unpacked)')
    if not osp.isdir(root):
        raise COCOLayoutError(f'{root} does not exist; {layout}')
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f'unknown split {split!r}; choose from {SPLITS}')
        ann = annotation_file(root, split)
        if not osp.isfile(ann):
            raise COCOLayoutError(f'{ann} not found; {layout}')
        if not osp.isdir(osp.join(root, split)):
            raise COCOLayoutError(f'{osp.join(root, split)} not found; {layout}')


def annotation_file(root: str, split: str) -> str:
    """``<root>/annotations/instances_<split>.json``."""
    return osp.join(root, 'annotations', f'instances_{split}.json')


def category_map(coco: COCO) -> dict[int, int]:
    """COCO category id -> contiguous label ``1..K`` (ids in increasing order)."""
    return {cid: i + 1 for i, cid in enumerate(sorted(coco.getCatIds()))}


def paint_mask(coco: COCO, img_id: int, id_map: Mapping[int, int],
               crowd_ignore: bool = False) -> np.ndarray:
    """The semantic mask of one image (see the module docstring for the painting order).

    Args:
        coco: Loaded annotations.
        img_id: COCO image id.
        id_map: From :func:`category_map`.
        crowd_ignore: Paint crowd regions 255 instead of their class.

    Returns:
        np.ndarray: ``(H, W)`` uint8 labels (original image frame).
    """
    info = coco.loadImgs(img_id)[0]
    mask = np.zeros((info['height'], info['width']), np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None))
    for ann in sorted(anns, key=lambda a: (-float(a['area']), a['id'])):
        ann = _valid_polygons(ann)
        if ann is None:
            continue
        region = coco.annToMask(ann).astype(bool)
        mask[region] = IGNORE if crowd_ignore and ann.get('iscrowd', 0) else id_map[
            ann['category_id']]
    return mask


def _valid_polygons(ann: dict) -> dict | None:
    """``ann`` without degenerate polygons (fewer than 3 points or an odd coordinate
    count, which pycocotools cannot rasterise); ``None`` when none is left. RLE
    segmentations are returned unchanged."""
    seg = ann.get('segmentation')
    if not isinstance(seg, list):
        return ann
    polygons = [p for p in seg if len(p) >= 6 and len(p) % 2 == 0]
    if not polygons:
        return None
    return ann if len(polygons) == len(seg) else dict(ann, segmentation=polygons)


def image_label(coco: COCO, img_id: int, id_map: Mapping[int, int]) -> np.ndarray:
    """``(K,)`` float32 multi-hot of every annotated class of the image (crowd included)."""
    label = np.zeros(len(id_map), np.float32)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None)):
        label[id_map[ann['category_id']] - 1] = 1.0
    return label


# ----------------------------------------------------------------------------- workers
_COCO: COCO | None = None
_JOB: dict = {}


def _init_worker(ann_file: str, job: dict) -> None:
    """Keep the annotations (inherited when forked, loaded when spawned) and the job."""
    global _COCO, _JOB
    if _COCO is None:
        _COCO = COCO(ann_file)
    _JOB = job


def _write_mask(img_id: int) -> tuple[int, str | None, str]:
    info = _COCO.loadImgs(img_id)[0]
    name = osp.splitext(info['file_name'])[0]
    try:
        mask = paint_mask(_COCO, img_id, _JOB['id_map'], _JOB['crowd_ignore'])
        save_label_png(osp.join(_JOB['mask_dir'], name + '.png'), mask)
    except Exception as e:  # noqa: BLE001 - one bad annotation must not stop the job
        return img_id, 'bad_annotation', f'{type(e).__name__}: {e}'
    return img_id, None, ''


def convert_coco14(root: str, splits: Sequence[str] = SPLITS, crowd_ignore: bool = False,
                   workers: int = 4, overwrite: bool = False,
                   progress: bool = True) -> COCO14ConvertSummary:
    """Convert COCO 2014 annotations into masks, lists and labels (module docstring).

    Args:
        root: COCO root (``train2014/``, ``val2014/``, ``annotations/``).
        splits: Splits to convert.
        crowd_ignore: Paint crowd regions 255.
        workers: Processes for the masks (``<= 1``: this process).
        overwrite: Rewrite existing masks.
        progress: Show progress bars.

    Returns:
        COCO14ConvertSummary: Counts, files and failures.

    Raises:
        COCOLayoutError: Input layout problems (before anything is written).
        ValueError: When the splits' category sets differ, or the existing masks were made
            with another ``crowd_ignore`` (and not ``overwrite``).
    """
    global _COCO, _JOB
    check_coco_root(root, splits)
    id_map_file = osp.join(root, MASK_DIR, ID_MAP_FILE)
    if osp.isfile(id_map_file) and not overwrite:
        with open(id_map_file) as f:
            before = json.load(f).get('crowd_ignore')
        if before is not None and bool(before) != bool(crowd_ignore):
            raise ValueError(
                f'the masks in {osp.join(root, MASK_DIR)} were made with crowd_ignore={before}; '
                'rerun with the same --crowd-ignore setting, or with --overwrite to redo them')
    summary = COCO14ConvertSummary()
    labels_path = osp.join(root, 'cls_labels.npy')
    labels = load_cls_labels(labels_path) if osp.isfile(labels_path) else {}
    id_map_ref, categories = None, None
    for split in splits:
        ann_file = annotation_file(root, split)
        coco = COCO(ann_file)
        id_map = category_map(coco)
        if id_map_ref is not None and id_map != id_map_ref:
            raise ValueError(f'{ann_file}: its categories differ from the other split\'s')
        id_map_ref = id_map
        categories = [dict(id=cid, label=lab, name=coco.loadCats(cid)[0]['name'])
                      for cid, lab in id_map.items()]
        annotated = sorted(i for i in coco.getImgIds() if coco.getAnnIds(imgIds=i, iscrowd=None))
        summary.splits[split] = len(annotated)
        summary.skipped_no_annotation[split] = len(coco.getImgIds()) - len(annotated)
        names = {i: osp.splitext(coco.loadImgs(i)[0]['file_name'])[0] for i in annotated}
        mask_dir = osp.join(root, MASK_DIR, split)
        os.makedirs(mask_dir, exist_ok=True)
        for i in annotated:
            file_name = coco.loadImgs(i)[0]['file_name']
            if not osp.isfile(osp.join(root, split, file_name)):
                summary.failures.add('missing_image', osp.join(root, split, file_name),
                                     'in the annotations, no image file (its mask is written)')
        todo = [i for i in annotated if overwrite
                or not osp.isfile(osp.join(mask_dir, names[i] + '.png'))]
        summary.existing += len(annotated) - len(todo)
        for i in annotated:
            labels[names[i]] = image_label(coco, i, id_map)
        job = dict(id_map=id_map, crowd_ignore=crowd_ignore, mask_dir=mask_dir)
        _COCO, _JOB = coco, job  # inherited by forked workers; used directly when workers<=1
        bar = dict(total=len(todo), desc=f'masks {split}', unit='img', disable=not progress)
        try:
            if workers <= 1 or len(todo) <= 1:
                with tqdm(**bar) as pbar:
                    results = []
                    for i in todo:
                        results.append(_write_mask(i))
                        pbar.update(1)
            else:
                chunk = max(1, min(64, len(todo) // (8 * workers)))
                with worker_pool(workers, _init_worker, (ann_file, job)) as pool, \
                        tqdm(**bar) as pbar:
                    results = []
                    for r in pool.imap_unordered(_write_mask, todo, chunksize=chunk):
                        results.append(r)
                        pbar.update(1)
        finally:
            _COCO, _JOB = None, {}
        for img_id, reason, message in results:
            if reason is None:
                summary.written += 1
            else:
                summary.failures.add(reason, names[img_id], message)
        # Final check: one mask per listed image.
        failed = {n for items in summary.failures.entries.values() for n, _ in items}
        for i in annotated:
            if names[i] not in failed and not osp.isfile(osp.join(mask_dir, names[i] + '.png')):
                summary.failures.add('count_check', names[i], 'no mask after the run')
        list_path = osp.join(root, SPLIT_DIR, LIST_NAMES[split] + '.txt')
        _write_list(list_path, [names[i] for i in annotated])
        summary.files.append(list_path)
    summary.num_classes = len(id_map_ref or {})
    save_cls_labels(labels_path, labels)
    id_map_path = osp.join(root, MASK_DIR, ID_MAP_FILE)
    atomic_save_json(id_map_path, dict(background=0, ignore=IGNORE, crowd_ignore=crowd_ignore,
                                       categories=categories))
    summary.files += [labels_path, id_map_path]
    return summary


def _write_list(path: str, names: Sequence[str]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(''.join(n + '\n' for n in names))
    os.replace(tmp, path)


def read_id_map(root: str) -> list[dict]:
    """The categories written by :func:`convert_coco14` (``id``, ``label``, ``name``).

    Raises:
        FileNotFoundError: When the converter has not run (says how to run it).
    """
    path = osp.join(root, MASK_DIR, ID_MAP_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found; run python tools/dataset_converters/'
                                f'coco14.py {root}')
    with open(path) as f:
        return json.load(f)['categories']


# ----------------------------------------------------------------------------- importers
def labels_from_clip_es(paths: Sequence[str], num_classes: int = 80) -> dict[str, np.ndarray]:
    """Image-level labels from CLIP-ES-style split files (``name idx idx ...``, 0-based
    class indices over the 80 classes in category-id order).

    Raises:
        FileNotFoundError: A missing file.
        ValueError: A malformed line or an index outside ``[0, num_classes)`` (file:line).
    """
    labels: dict[str, np.ndarray] = {}
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(f'label list {path} not found')
        with open(path, encoding='utf-8-sig') as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                label = np.zeros(num_classes, np.float32)
                try:
                    idx = [int(p) for p in parts[1:]]
                except ValueError:
                    raise ValueError(f'{path}:{lineno}: expected "name idx idx ...", got '
                                     f'{line.strip()!r}') from None
                bad = [i for i in idx if not 0 <= i < num_classes]
                if bad:
                    raise ValueError(f'{path}:{lineno}: class indices {bad} outside '
                                     f'[0, {num_classes})')
                label[idx] = 1.0
                labels[osp.splitext(osp.basename(parts[0]))[0]] = label
    return labels


def labels_from_irn(path: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Image-level labels from an IRN-style ``cls_labels_coco.npy`` (a pickled dict keyed by
    the integer COCO image id) for the given image names (``COCO_<split>_<12-digit id>``).

    Raises:
        FileNotFoundError: A missing file.
        KeyError: Names whose id is not in the file (the first ones listed).
        ValueError: When the file is not such a dict.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'label file {path} not found')
    data = np.load(path, allow_pickle=True).item()
    if not isinstance(data, dict):
        raise ValueError(f'{path} holds a {type(data).__name__}, expected a dict id -> labels')
    by_id = {int(k): np.asarray(v, np.float32).reshape(-1) for k, v in data.items()}
    out, missing = {}, []
    for name in names:
        img_id = int(name.rsplit('_', 1)[-1])
        if img_id in by_id:
            out[name] = by_id[img_id]
        else:
            missing.append(name)
    if missing:
        raise KeyError(f'{len(missing)} images have no entry in {path} (first: {missing[:5]})')
    return out
