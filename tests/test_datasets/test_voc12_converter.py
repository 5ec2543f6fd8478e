"""tools/dataset_converters/voc12.py on bad input: per-image failures and layout errors."""
import importlib.util
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image

from s2c.datasets.converters.voc12 import (
    VOC12ConvertSummary,
    VOCLayoutError,
    convert_voc12,
    labels_from_mask,
)
from s2c.utils import load_label_png, save_label_png

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def tool():
    """The converter CLI module (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'voc12_tool', osp.join(REPO, 'tools', 'dataset_converters', 'voc12.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_voc(root, masks, xmls=None):
    """A tiny VOC2012 folder: one 8x8 JPEG and mask (or XML) per image, all in train.txt."""
    (root / 'ImageSets/Segmentation').mkdir(parents=True)
    (root / 'JPEGImages').mkdir()
    (root / 'SegmentationClass').mkdir()
    for name, value in masks.items():
        Image.new('RGB', (8, 8)).save(root / 'JPEGImages' / f'{name}.jpg')
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:5] = value
        mask[0] = 255
        save_label_png(str(root / 'SegmentationClass' / f'{name}.png'), mask)
    if xmls is not None:
        (root / 'Annotations').mkdir()
        for name, text in xmls.items():
            (root / 'Annotations' / f'{name}.xml').write_text(text)
    (root / 'ImageSets/Segmentation/train.txt').write_text('\n'.join(masks) + '\n')
    return root


def _run(tool, capsys, *argv):
    rc = tool.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_bad_masks_are_named_and_the_rest_is_written(tool, capsys, tmp_path):
    root = _make_voc(tmp_path / 'VOC2012', {'a': 1, 'b': 3, 'c': 7, 'd': 15, 'e': 20})
    (root / 'SegmentationClass/b.png').write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
    bad = np.zeros((8, 8), np.uint8)
    bad[1, 1] = 22
    save_label_png(str(root / 'SegmentationClass/d.png'), bad)
    rc, out, err = _run(tool, capsys, root, '--out', tmp_path / 'out')
    assert rc == 1
    assert 'Traceback' not in err
    assert f'bad_mask: 1\n    {root / "SegmentationClass/b.png"}' in err
    assert f'label_out_of_range: 1\n    {root / "SegmentationClass/d.png"}' in err
    assert 'label values [22] exceed 20' in err and '2 image(s) failed' in err
    labels = np.load(tmp_path / 'out/cls_labels.npy', allow_pickle=True).item()
    assert sorted(labels) == ['a', 'c', 'e']
    assert [np.nonzero(labels[n])[0].tolist() for n in 'ace'] == [[0], [6], [19]]
    assert 'labels from segmentation masks: 3 images' in out
    assert not list((tmp_path / 'out').glob('.tmp-*'))


def test_out_of_range_pixel_in_real_sample(voc_samples_root, tool, capsys, tmp_path):
    root = tmp_path / 'VOC2012'
    shutil.copytree(voc_samples_root, root)
    png = root / 'SegmentationClass/sample_0000.png'
    mask = load_label_png(str(png)).copy()
    mask[0, 0] = 22
    save_label_png(str(png), mask)
    rc, _, err = _run(tool, capsys, root, '--out', tmp_path / 'out')
    assert rc == 1 and str(png) in err and 'label values [22] exceed 20' in err
    labels = np.load(tmp_path / 'out/cls_labels.npy', allow_pickle=True).item()
    assert len(labels) == 13 and 'sample_0000' not in labels


def test_missing_image_unlabelled_image_and_bad_xml(tmp_path):
    good = '<annotation><object><name>cat</name></object></annotation>'
    root = _make_voc(tmp_path / 'VOC2012', {'a': 1, 'b': 2, 'c': 3, 'd': 4},
                     xmls={'a': good, 'b': '<annotation><object>', 'c': good})
    (root / 'JPEGImages/c.jpg').unlink()
    (root / 'SegmentationClass/d.png').unlink()
    summary = convert_voc12(str(root))
    assert isinstance(summary, VOC12ConvertSummary) and not summary.ok
    assert summary.failures.names('bad_annotation') == [str(root / 'Annotations/b.xml')]
    assert summary.failures.names('missing_image') == [str(root / 'JPEGImages/c.jpg')]
    assert summary.failures.names('no_label_source') == ['d']
    assert summary.num_labelled == 1 and summary['class_counts']['cat'] == 1
    assert 'give --sbd' in summary.format_problems()


def test_no_foreground_is_a_warning_not_a_failure(tool, capsys, tmp_path):
    root = _make_voc(tmp_path / 'VOC2012', {'a': 0, 'b': 5})
    rc, _, err = _run(tool, capsys, root)
    assert rc == 0
    assert 'warning: 1 image(s) have no foreground class' in err
    assert str(root / 'SegmentationClass/a.png') in err and 'failed' not in err
    labels = np.load(root / 'cls_labels.npy', allow_pickle=True).item()
    assert not labels['a'].any() and labels['b'][4] == 1


def test_nothing_labelled_keeps_the_previous_file(tool, capsys, tmp_path):
    root = _make_voc(tmp_path / 'VOC2012', {'a': 1})
    (root / 'SegmentationClass/a.png').write_bytes(b'junk')
    (root / 'cls_labels.npy').write_bytes(b'previous')
    rc, _, err = _run(tool, capsys, root)
    assert rc == 1 and 'not written' in err
    assert (root / 'cls_labels.npy').read_bytes() == b'previous'


@pytest.mark.parametrize('which', ['missing', 'parent', 'no_splits'])
def test_wrong_root_exits_2_naming_the_path(which, tool, capsys, tmp_path):
    voc = _make_voc(tmp_path / 'VOCdevkit' / 'VOC2012', {'a': 1})
    if which == 'missing':
        root, named = tmp_path / 'nowhere', tmp_path / 'nowhere'
    elif which == 'parent':
        root, named = tmp_path / 'VOCdevkit', tmp_path / 'VOCdevkit' / 'JPEGImages'
    else:
        (voc / 'ImageSets/Segmentation/train.txt').unlink()
        root, named = voc, voc / 'ImageSets/Segmentation'
    rc, out, err = _run(tool, capsys, root, '--out', tmp_path / 'out')
    assert rc == 2 and out == ''
    assert err.startswith('error: ') and str(named) in err and 'Traceback' not in err
    assert 'VOCdevkit/VOC2012' in err
    if which == 'parent':
        assert f'did you mean {voc}?' in err
    assert not (tmp_path / 'out').exists()


def test_wrong_sbd_root(tool, capsys, tmp_path):
    root = _make_voc(tmp_path / 'VOC2012', {'a': 1})
    (root / 'ImageSets/Segmentation/val.txt').write_text('')
    sbd = tmp_path / 'benchmark_RELEASE'
    (sbd / 'dataset').mkdir(parents=True)
    rc, _, err = _run(tool, capsys, root, '--sbd', sbd)
    assert rc == 2 and str(sbd / 'train.txt') in err and f'did you mean {sbd / "dataset"}' in err
    for f in ('train.txt', 'val.txt'):
        (sbd / 'dataset' / f).write_text('a\n')
    with pytest.raises(VOCLayoutError, match=f'{sbd / "dataset" / "cls"} not found'):
        convert_voc12(str(root), str(sbd / 'dataset'))
    assert issubclass(VOCLayoutError, FileNotFoundError)
    assert not (root / 'cls_labels.npy').exists()


def test_labels_from_mask_rejects_negative_values():
    with pytest.raises(ValueError, match=r'\[-1\] are outside 0..20'):
        labels_from_mask(np.array([[0, -1], [3, 255]]))


def test_png_images_are_pointed_out(tmp_path):
    root = _make_voc(tmp_path / 'VOC2012', {'a': 1, 'b': 2})
    for name in 'ab':
        jpg = root / 'JPEGImages' / f'{name}.jpg'
        Image.open(jpg).save(root / 'JPEGImages' / f'{name}.png')
        jpg.unlink()
    with pytest.raises(VOCLayoutError, match=r"none of the 2 listed images .*a\.png exists: "
                                             r"set img_suffix='\.png'"):
        convert_voc12(str(root))
