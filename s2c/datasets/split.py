"""Image lists (split files): one id per line."""
from __future__ import annotations

import os.path as osp


def read_split(path: str) -> list[str]:
    """Read an image list.

    Accepts bare ids (``2007_000032``) as in ``ImageSets/Segmentation/*.txt`` and
    PSA-style lines (``/JPEGImages/2007_000032.jpg /SegmentationClassAug/...``):
    the id is the stem of the first token. Blank lines are skipped; a UTF-8 BOM
    (Windows editors) is dropped.

    Args:
        path: The list file.

    Returns:
        list[str]: Image ids in file order.

    Raises:
        FileNotFoundError: When the list does not exist (the message says how to make one).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'image list {path} not found; VOC lists live in '
            '<data_root>/ImageSets/Segmentation/ (train_aug.txt is written by '
            'tools/dataset_converters/voc12.py ROOT --sbd SBD_ROOT).')
    names = []
    with open(path, encoding='utf-8-sig') as f:
        for line in f:
            token = line.strip().split(' ')[0] if line.strip() else ''
            if token:
                names.append(osp.splitext(osp.basename(token))[0])
    return names
