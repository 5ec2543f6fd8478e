"""Prepare a VOC 2012 folder for CAM training: image-level labels and train_aug.

``cls_labels.npy`` follows PSA's format (``voc12/make_cls_labels.py``): a
pickled dict ``name -> (20,) float32`` multi-hot vector. Labels are read
from ``Annotations/<name>.xml`` (every object name, "difficult" ones
included, as PSA does) when that folder exists, otherwise from the
segmentation masks (classes present, ignoring 0 and 255), looked up in
``SegmentationClass``, ``SegmentationClassAug`` and SBD's ``cls/*.mat``.

``train_aug.txt`` (10,582 ids on the full data) = VOC train + SBD train +
SBD val, minus VOC val, sorted.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import xml.etree.ElementTree as ET

import numpy as np
from tqdm import tqdm

from s2c.utils import atomic_write, load_label_png

from .class_names import VOC_CLASSES
from .voc12 import read_split

SPLIT_DIR = 'ImageSets/Segmentation'


def labels_from_xml(path: str, classes: tuple[str, ...] = VOC_CLASSES) -> np.ndarray:
    """``(C,)`` float32 multi-hot vector of the object names in a VOC XML annotation.

    Raises:
        ValueError: When the XML cannot be parsed or names an unknown class.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f'cannot parse annotation {path}: {e}') from e
    vec = np.zeros(len(classes), np.float32)
    for obj in root.iter('object'):
        name = obj.findtext('name', '').strip()
        if name not in classes:
            raise ValueError(f'{path}: unknown class {name!r}')
        vec[classes.index(name)] = 1.0
    return vec


def labels_from_mask(mask: np.ndarray, num_classes: int = len(VOC_CLASSES)) -> np.ndarray:
    """``(C,)`` float32 multi-hot vector of the classes present in a label map.

    Values 0 (background) and 255 (ignore) are skipped.

    Raises:
        ValueError: When the map holds values outside ``{0..C, 255}``.
    """
    ids = np.unique(mask)
    ids = ids[(ids != 0) & (ids != 255)]
    if ids.size and ids.max() > num_classes:
        raise ValueError(f'label values {ids[ids > num_classes].tolist()} exceed {num_classes}')
    vec = np.zeros(num_classes, np.float32)
    vec[ids.astype(np.int64) - 1] = 1.0
    return vec


def _read_sbd_mask(path: str) -> np.ndarray:
    from scipy.io import loadmat
    return loadmat(path)['GTcls'][0]['Segmentation'][0]


def sbd_train_aug(voc_root: str, sbd_root: str) -> list[str]:
    """The 10,582-image ``train_aug`` list from VOC 2012 and SBD splits.

    Args:
        voc_root: ``VOCdevkit/VOC2012``.
        sbd_root: SBD's ``benchmark_RELEASE/dataset`` (holding ``train.txt``,
            ``val.txt``, ``cls/``).

    Raises:
        FileNotFoundError: When a list is missing.
    """
    voc_train = read_split(osp.join(voc_root, SPLIT_DIR, 'train.txt'))
    voc_val = set(read_split(osp.join(voc_root, SPLIT_DIR, 'val.txt')))
    sbd = read_split(osp.join(sbd_root, 'train.txt')) + read_split(osp.join(sbd_root, 'val.txt'))
    return sorted((set(voc_train) | set(sbd)) - voc_val)


def convert_voc12(root: str, sbd_root: str | None = None, out: str | None = None) -> dict:
    """Write ``cls_labels.npy`` (and ``train_aug.txt`` with SBD) for a VOC 2012 folder.

    Args:
        root: ``VOCdevkit/VOC2012`` (needs ``JPEGImages`` and ``ImageSets/Segmentation``).
        sbd_root: SBD ``benchmark_RELEASE/dataset`` folder, optional.
        out: Output folder (default ``root``); ``train_aug.txt`` goes to
            ``<out>/ImageSets/Segmentation/`` when ``out`` differs.

    Returns:
        dict: ``splits`` (name -> image count), ``class_counts`` (class ->
        images), ``label_source`` and the written ``files``.

    Raises:
        FileNotFoundError: On a missing folder/list or an image without any
            label source (names it).
    """
    out = out or root
    for sub in ('JPEGImages', SPLIT_DIR):
        if not osp.isdir(osp.join(root, sub)):
            raise FileNotFoundError(f'{osp.join(root, sub)} not found: ROOT must be a '
                                    'VOCdevkit/VOC2012 folder')
    split_files = sorted(glob.glob(osp.join(root, SPLIT_DIR, '*.txt')))
    splits = {osp.splitext(osp.basename(p))[0]: read_split(p) for p in split_files}
    files = []
    if sbd_root is not None:
        splits['train_aug'] = sbd_train_aug(root, sbd_root)
        path = osp.join(out, SPLIT_DIR, 'train_aug.txt')
        os.makedirs(osp.dirname(path), exist_ok=True)
        with atomic_write(path) as tmp, open(tmp, 'w') as f:
            f.write('\n'.join(splits['train_aug']) + '\n')
        files.append(path)
    names = sorted({n for ns in splits.values() for n in ns})
    missing_img = [n for n in names if not osp.isfile(osp.join(root, 'JPEGImages', n + '.jpg'))]
    if missing_img:
        raise FileNotFoundError(f'{len(missing_img)} listed images are missing from '
                                f'{osp.join(root, "JPEGImages")} (first: {missing_img[:5]})')

    xml_dir = osp.join(root, 'Annotations')
    use_xml = osp.isdir(xml_dir)
    mask_dirs = [osp.join(root, d) for d in ('SegmentationClass', 'SegmentationClassAug')]
    labels, unlabelled = {}, []
    for name in tqdm(names, desc='image-level labels'):
        xml = osp.join(xml_dir, name + '.xml')
        if use_xml and osp.isfile(xml):
            labels[name] = labels_from_xml(xml)
            continue
        png = next((osp.join(d, name + '.png') for d in mask_dirs
                    if osp.isfile(osp.join(d, name + '.png'))), None)
        if png is not None:
            labels[name] = labels_from_mask(load_label_png(png))
        elif sbd_root is not None and osp.isfile(osp.join(sbd_root, 'cls', name + '.mat')):
            labels[name] = labels_from_mask(_read_sbd_mask(osp.join(sbd_root, 'cls',
                                                                     name + '.mat')))
        else:
            unlabelled.append(name)
    if unlabelled:
        raise FileNotFoundError(
            f'{len(unlabelled)} images have no Annotations/*.xml nor a mask '
            f'(first: {unlabelled[:5]}); give --sbd for SBD images or add Annotations/')
    path = osp.join(out, 'cls_labels.npy')
    os.makedirs(out, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        np.save(f, labels, allow_pickle=True)
    files.append(path)

    class_counts = {}
    stacked = np.stack([labels[n] for n in names]) if names else np.zeros((0, 20))
    for i, cls in enumerate(VOC_CLASSES):
        class_counts[cls] = int(stacked[:, i].sum())
    return dict(splits={k: len(v) for k, v in splits.items()}, class_counts=class_counts,
                label_source='Annotations/*.xml' if use_xml else 'segmentation masks',
                num_labelled=len(labels), files=files)
