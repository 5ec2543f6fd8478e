"""Prepare a VOC 2012 folder for CAM training: image-level labels and train_aug.

``cls_labels.npy`` follows PSA's format (``voc12/make_cls_labels.py``): a
pickled dict ``name -> (20,) float32`` multi-hot vector. Labels are read
from ``Annotations/<name>.xml`` (every object name, "difficult" ones
included, as PSA does) when that folder exists, otherwise from the
segmentation masks (classes present, ignoring 0 and 255), looked up in
``SegmentationClass``, ``SegmentationClassAug`` and SBD's ``cls/*.mat``.

``train_aug.txt`` (10,582 ids on the full data) = VOC train + SBD train +
SBD val, minus VOC val, sorted.

Errors are reported at two levels:

* Layout errors (``ROOT`` missing, no ``JPEGImages`` or
  ``ImageSets/Segmentation``, no image lists, a wrong SBD folder, none of the
  listed images present) raise :class:`VOCLayoutError` before anything is
  written.
* Problems with single images are collected in the summary's ``failures``
  (a :class:`~s2c.utils.FailureLog`, keyed by the file at
  fault) and the other images are still converted; ``cls_labels.npy`` then
  holds the good images only. Reasons: ``missing_image`` (listed, no JPEG),
  ``no_label_source`` (no XML, mask nor SBD ``.mat``), ``bad_annotation``
  (unreadable XML or unknown class name), ``bad_mask`` (unreadable or
  corrupt PNG / ``.mat``), ``label_out_of_range`` (mask values outside
  ``{0..20, 255}``).
* An image whose label has no foreground class is *not* a failure: VOC has
  none, and :class:`~s2c.datasets.VOC12ClsDataset` already leaves such images
  out with a warning, so its all-zero label is written and it is listed in the
  summary's ``warnings`` under ``no_foreground``.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np
from scipy.io import loadmat
from tqdm import tqdm

from s2c.utils import atomic_write, load_label_png
from s2c.utils.image_io import suffix_hint
from s2c.utils.job_summary import FailureLog

from ..class_names import VOC_CLASSES
from ..cls_labels import save_cls_labels
from ..split import read_split

SPLIT_DIR = 'ImageSets/Segmentation'
ROOT_HELP = ('ROOT must be a VOCdevkit/VOC2012 folder holding JPEGImages/ and '
             'ImageSets/Segmentation/*.txt')
SBD_HELP = ('--sbd must be SBD\'s benchmark_RELEASE/dataset folder holding train.txt, val.txt '
            'and cls/')
NO_LABEL_HELP = 'give --sbd for SBD images or add Annotations/'


class VOCLayoutError(FileNotFoundError):
    """The VOC or SBD folder does not have the expected layout (nothing was written).

    A :class:`FileNotFoundError`, so callers that caught the converter's
    earlier errors keep working. The message names the path and what is expected.
    """


def labels_from_xml(path: str, classes: tuple[str, ...] = VOC_CLASSES) -> np.ndarray:
    """``(C,)`` float32 multi-hot vector of the object names in a VOC XML annotation.

    Args:
        path: ``Annotations/<name>.xml``.
        classes: Class names; index ``i`` of the vector is ``classes[i]``.

    Returns:
        np.ndarray: ``(C,)`` float32 multi-hot vector.

    Raises:
        ValueError: When the XML cannot be read or parsed or names an unknown class.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f'cannot parse annotation {path}: {e}') from e
    except OSError as e:
        raise ValueError(f'cannot read annotation {path}: {e}') from e
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

    Args:
        mask: ``(H, W)`` integer label map.
        num_classes: Foreground classes ``C``; valid values are ``0..C`` and 255.

    Returns:
        np.ndarray: ``(C,)`` float32 multi-hot vector.

    Raises:
        ValueError: When the map holds values outside ``{0..C, 255}``.
    """
    ids = np.unique(mask)
    ids = ids[(ids != 0) & (ids != 255)]
    bad = ids[(ids < 0) | (ids > num_classes)]
    if bad.size:
        what = f'exceed {num_classes}' if (bad > 0).all() else f'are outside 0..{num_classes}'
        raise ValueError(f'label values {bad.tolist()} {what} (allowed: 0 background, '
                         f'1..{num_classes} classes, 255 ignore)')
    vec = np.zeros(num_classes, np.float32)
    vec[ids.astype(np.int64) - 1] = 1.0
    return vec


def _read_sbd_mask(path: str) -> np.ndarray:
    """Class map of an SBD ``cls/<name>.mat``; ValueError when it cannot be read."""
    try:
        return np.asarray(loadmat(path)['GTcls'][0]['Segmentation'][0])
    except Exception as e:  # scipy raises several types for corrupt or foreign files
        raise ValueError(f'cannot read SBD mask {path} (expected GTcls.Segmentation): '
                         f'{type(e).__name__}: {e}') from e


def _read_list(path: str) -> list[str]:
    """:func:`read_split`, with an unreadable list turned into a :class:`VOCLayoutError`."""
    try:
        return read_split(path)
    except (OSError, UnicodeDecodeError) as e:
        raise VOCLayoutError(f'cannot read image list {path}: {e}') from e


def _did_you_mean(path: str, subs: tuple[str, ...]) -> str:
    """``'; did you mean X?'`` for the first existing ``path/sub`` (empty when none)."""
    for sub in subs:
        if osp.isdir(osp.join(path, sub)):
            return f'; did you mean {osp.join(path, sub)}?'
    return ''


def check_voc_root(root: str) -> None:
    """Check that ``root`` looks like ``VOCdevkit/VOC2012``.

    Args:
        root: The folder given as ``ROOT``.

    Raises:
        VOCLayoutError: When ``root``, ``JPEGImages`` or ``ImageSets/Segmentation``
            is missing or the latter holds no ``*.txt`` list (names the path).
    """
    hint = _did_you_mean(root, ('VOC2012', 'VOCdevkit/VOC2012'))
    if not osp.isdir(root):
        raise VOCLayoutError(f'{root} is not a folder: {ROOT_HELP}')
    for sub in ('JPEGImages', SPLIT_DIR):
        if not osp.isdir(osp.join(root, sub)):
            raise VOCLayoutError(f'{osp.join(root, sub)} not found: {ROOT_HELP}{hint}')
    if not glob.glob(osp.join(root, SPLIT_DIR, '*.txt')):
        raise VOCLayoutError(f'no image lists (*.txt) in {osp.join(root, SPLIT_DIR)}: '
                             f'{ROOT_HELP}')


def check_sbd_root(sbd_root: str, need_cls: bool) -> None:
    """Check that ``sbd_root`` looks like SBD's ``benchmark_RELEASE/dataset``.

    Args:
        sbd_root: The folder given as ``--sbd``.
        need_cls: Also require ``cls/`` (labels of SBD images come from its
            ``.mat`` masks when VOC has no ``Annotations/``).

    Raises:
        VOCLayoutError: When the folder, ``train.txt``, ``val.txt`` or (with
            ``need_cls``) ``cls/`` is missing (names the path).
    """
    hint = _did_you_mean(sbd_root, ('dataset', 'benchmark_RELEASE/dataset'))
    if not osp.isdir(sbd_root):
        raise VOCLayoutError(f'SBD folder {sbd_root} is not a folder: {SBD_HELP}')
    for sub in ('train.txt', 'val.txt'):
        if not osp.isfile(osp.join(sbd_root, sub)):
            raise VOCLayoutError(f'{osp.join(sbd_root, sub)} not found: {SBD_HELP}{hint}')
    if need_cls and not osp.isdir(osp.join(sbd_root, 'cls')):
        raise VOCLayoutError(f'{osp.join(sbd_root, "cls")} not found and the VOC folder has no '
                             f'Annotations/, so SBD images would have no labels: {SBD_HELP}'
                             f'{hint}')


def sbd_train_aug(voc_root: str, sbd_root: str) -> list[str]:
    """The 10,582-image ``train_aug`` list from VOC 2012 and SBD splits.

    Args:
        voc_root: ``VOCdevkit/VOC2012``.
        sbd_root: SBD's ``benchmark_RELEASE/dataset`` (holding ``train.txt``,
            ``val.txt``, ``cls/``).

    Returns:
        list[str]: Sorted image ids.

    Raises:
        FileNotFoundError: When a list is missing.
    """
    voc_train = read_split(osp.join(voc_root, SPLIT_DIR, 'train.txt'))
    voc_val = set(read_split(osp.join(voc_root, SPLIT_DIR, 'val.txt')))
    sbd = read_split(osp.join(sbd_root, 'train.txt')) + read_split(osp.join(sbd_root, 'val.txt'))
    return sorted((set(voc_train) | set(sbd)) - voc_val)


@dataclass
class VOC12ConvertSummary:
    """Outcome of :func:`convert_voc12`.

    Items can also be read as ``summary['splits']`` etc., as with the dict the
    function returned before.

    Attributes:
        splits: Split name -> number of listed images.
        class_counts: Class name -> number of labelled images holding it.
        label_source: ``'Annotations/*.xml'`` or ``'segmentation masks'``.
        num_labelled: Images written to ``cls_labels.npy``.
        files: Files written.
        failures: Images left out, by reason (see the module docstring); each
            entry is ``(file at fault or image id, message)``.
        warnings: Images written but worth a look (``no_foreground``).
    """

    splits: dict[str, int]
    class_counts: dict[str, int]
    label_source: str
    num_labelled: int
    files: list[str]
    failures: FailureLog = field(default_factory=FailureLog)
    warnings: FailureLog = field(default_factory=FailureLog)

    @property
    def ok(self) -> bool:
        """True when no image failed (warnings do not count)."""
        return self.failures.count == 0

    def __getitem__(self, key: str):
        """Attribute access by name (the converter used to return a dict)."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def format_problems(self, max_per_reason: int = 5) -> str:
        """Failures and warnings: count per reason and the first files of each.

        Args:
            max_per_reason: Files listed per reason.

        Returns:
            str: Multi-line text, empty when there is nothing to report.
        """
        lines = []
        if self.warnings.entries:
            lines.append(f'warning: {self.warnings.count} image(s) have no foreground class; '
                         'their all-zero labels were written and VOC12ClsDataset leaves '
                         'them out:')
            lines += ['  ' + ln for ln in
                      self.warnings.format(max_per_reason).splitlines()[1:]]
        if not self.ok:
            lines.append('error: ' + self.failures.format(max_per_reason))
            written = any(f.endswith('cls_labels.npy') for f in self.files)
            lines.append(f'{self.failures.count} image(s) left out of cls_labels.npy ('
                         + (f'written for the other {self.num_labelled}' if written
                            else 'not written: no image could be labelled')
                         + '); fix the files above and run again')
        return '\n'.join(lines)


def _image_label(name: str, root: str, sbd_root: str | None, use_xml: bool,
                 failures: FailureLog) -> tuple[np.ndarray | None, str]:
    """``(label, source file)`` of one image; ``label`` is None after recording why."""
    xml = osp.join(root, 'Annotations', name + '.xml')
    if use_xml and osp.isfile(xml):
        try:
            return labels_from_xml(xml), xml
        except ValueError as e:
            failures.add('bad_annotation', xml, str(e))
            return None, xml
    candidates = [osp.join(root, d, name + '.png')
                  for d in ('SegmentationClass', 'SegmentationClassAug')]
    mat = osp.join(sbd_root, 'cls', name + '.mat') if sbd_root is not None else None
    if mat is not None:
        candidates.append(mat)
    path = next((p for p in candidates if osp.isfile(p)), None)
    if path is None:
        failures.add('no_label_source', name,
                     f'no Annotations/{name}.xml nor SegmentationClass[Aug]/{name}.png in {root}'
                     + (f' nor cls/{name}.mat in {sbd_root}' if sbd_root else '')
                     + f'; {NO_LABEL_HELP}')
        return None, name
    try:
        mask = _read_sbd_mask(path) if path == mat else load_label_png(path)
    except (ValueError, OSError) as e:
        failures.add('bad_mask', path, str(e))
        return None, path
    try:
        return labels_from_mask(mask), path
    except ValueError as e:
        failures.add('label_out_of_range', path, f'{e}; fix or remove the mask')
        return None, path


def convert_voc12(root: str, sbd_root: str | None = None,
                  out: str | None = None) -> VOC12ConvertSummary:
    """Write ``cls_labels.npy`` (and ``train_aug.txt`` with SBD) for a VOC 2012 folder.

    Images that cannot be labelled are collected in the summary's
    ``failures`` and left out; the others are still written. Check
    ``summary.ok``.

    Args:
        root: ``VOCdevkit/VOC2012`` (needs ``JPEGImages`` and ``ImageSets/Segmentation``).
        sbd_root: SBD ``benchmark_RELEASE/dataset`` folder, optional.
        out: Output folder (default ``root``); ``train_aug.txt`` goes to
            ``<out>/ImageSets/Segmentation/`` when ``out`` differs.

    Returns:
        VOC12ConvertSummary: Split sizes, class counts, label source, written
        files, failures and warnings.

    Raises:
        VOCLayoutError: When ``root`` or ``sbd_root`` does not have the expected
            layout or none of the listed images is in ``JPEGImages`` (nothing is
            written then).
        OSError: When an output file cannot be written.
    """
    out = out or root
    check_voc_root(root)
    xml_dir = osp.join(root, 'Annotations')
    use_xml = osp.isdir(xml_dir)
    if sbd_root is not None:
        check_sbd_root(sbd_root, need_cls=not use_xml)
    split_files = sorted(glob.glob(osp.join(root, SPLIT_DIR, '*.txt')))
    splits = {osp.splitext(osp.basename(p))[0]: _read_list(p) for p in split_files}
    if sbd_root is not None:
        for p in (osp.join(root, SPLIT_DIR, s) for s in ('train.txt', 'val.txt')):
            if not osp.isfile(p):
                raise VOCLayoutError(f'{p} not found: train_aug.txt (--sbd) needs VOC\'s '
                                     'train.txt and val.txt')
        try:
            splits['train_aug'] = sbd_train_aug(root, sbd_root)
        except UnicodeDecodeError as e:
            raise VOCLayoutError(f'cannot read the SBD image lists in {sbd_root}: {e}') from e
    names = sorted({n for ns in splits.values() for n in ns})
    img_paths = {n: osp.join(root, 'JPEGImages', n + '.jpg') for n in names}
    missing_img = [n for n in names if not osp.isfile(img_paths[n])]
    if names and len(missing_img) == len(names):
        raise VOCLayoutError(f'none of the {len(names)} listed images is in '
                             f'{osp.join(root, "JPEGImages")} (e.g. {img_paths[names[0]]}'
                             f'{suffix_hint(img_paths[names[0]])}): {ROOT_HELP}')

    files = []
    if sbd_root is not None:
        path = osp.join(out, SPLIT_DIR, 'train_aug.txt')
        os.makedirs(osp.dirname(path), exist_ok=True)
        with atomic_write(path) as tmp, open(tmp, 'w') as f:
            f.write('\n'.join(splits['train_aug']) + '\n')
        files.append(path)

    failures, warnings = FailureLog(), FailureLog()
    for n in missing_img:
        failures.add('missing_image', img_paths[n],
                     'listed in ImageSets/Segmentation but missing'
                     f'{suffix_hint(img_paths[n])}; add the JPEG or remove the id from the lists')
    missing = set(missing_img)
    labels = {}
    for name in tqdm(names, desc='image-level labels'):
        if name in missing:
            continue
        label, source = _image_label(name, root, sbd_root, use_xml, failures)
        if label is None:
            continue
        if not label.any():
            warnings.add('no_foreground', source, 'no foreground class (label written, all zero)')
        labels[name] = label

    if labels or not failures.count:
        path = osp.join(out, 'cls_labels.npy')
        os.makedirs(out, exist_ok=True)
        save_cls_labels(path, labels)
        files.append(path)

    stacked = np.stack(list(labels.values())) if labels else np.zeros((0, len(VOC_CLASSES)))
    class_counts = {cls: int(stacked[:, i].sum()) for i, cls in enumerate(VOC_CLASSES)}
    return VOC12ConvertSummary(
        splits={k: len(v) for k, v in splits.items()}, class_counts=class_counts,
        label_source='Annotations/*.xml' if use_xml else 'segmentation masks',
        num_labelled=len(labels), files=files, failures=failures, warnings=warnings)
