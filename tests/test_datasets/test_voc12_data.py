"""VOC converter (cls_labels from masks), the dataset and its error messages."""
import os.path as osp
import shutil

import numpy as np
import pytest
from PIL import Image

from s2c.datasets import VOC12ClsDataset, read_split
from s2c.datasets.converters.voc12 import convert_voc12, labels_from_mask, labels_from_xml
from s2c.datasets.demo import DEMO_CLASSES, make_demo_dataset
from s2c.utils import load_label_png

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='Normalize'),
            dict(type='PackClsInputs')]


def test_cls_labels_from_masks_equal_png_classes(voc_samples_root, voc_samples_labels):
    labels = np.load(voc_samples_labels, allow_pickle=True).item()
    names = (read_split(osp.join(voc_samples_root, 'ImageSets/Segmentation/train.txt'))
             + read_split(osp.join(voc_samples_root, 'ImageSets/Segmentation/val.txt')))
    assert sorted(labels) == sorted(names) and len(names) == 14
    multi = 0
    for name in names:
        gt = load_label_png(osp.join(voc_samples_root, 'SegmentationClass', name + '.png'))
        present = sorted(set(np.unique(gt).tolist()) - {0, 255})
        assert labels[name].dtype == np.float32 and labels[name].shape == (20,)
        assert (np.nonzero(labels[name])[0] + 1).tolist() == present
        multi += len(present) == 2
    assert multi == 3  # the samples' README: three images hold two foreground classes


def test_converter_cli_prints_counts(voc_samples_root, tmp_path, run_tool):
    code, stdout, stderr = run_tool('dataset_converters/voc12', voc_samples_root, '--out',
                                    tmp_path)
    assert code == 0, stderr
    split_part, class_part = stdout.split('images per class')
    splits = dict(line.split() for line in split_part.splitlines() if line.startswith('  '))
    classes = dict(line.split() for line in class_part.splitlines() if line.startswith('  '))
    assert splits == {'train': '10', 'val': '4'}
    assert classes['aeroplane'] == '4' and classes['person'] == '2' and classes['cat'] == '0'
    assert 'person' in stdout and osp.isfile(tmp_path / 'cls_labels.npy')


def test_labels_from_xml_and_mask(tmp_path):
    xml = tmp_path / 'a.xml'
    xml.write_text('<annotation><object><name>dog</name></object><object><name>person</name>'
                   '<difficult>1</difficult></object></annotation>')
    assert np.nonzero(labels_from_xml(str(xml)))[0].tolist() == [11, 14]
    assert np.nonzero(labels_from_mask(np.array([[0, 3], [255, 20]])))[0].tolist() == [2, 19]
    with pytest.raises(ValueError, match='exceed'):
        labels_from_mask(np.array([[21]]))


def test_sbd_train_aug(tmp_path):
    voc = tmp_path / 'VOC2012'
    (voc / 'ImageSets/Segmentation').mkdir(parents=True)
    (voc / 'JPEGImages').mkdir()
    (voc / 'Annotations').mkdir()
    (voc / 'ImageSets/Segmentation/train.txt').write_text('a\nb\n')
    (voc / 'ImageSets/Segmentation/val.txt').write_text('c\n')
    sbd = tmp_path / 'sbd'
    sbd.mkdir()
    (sbd / 'train.txt').write_text('b\nc\nd\n')
    (sbd / 'val.txt').write_text('e\n')
    for n in 'abcde':
        Image.new('RGB', (4, 4)).save(voc / 'JPEGImages' / f'{n}.jpg')
        (voc / 'Annotations' / f'{n}.xml').write_text(
            '<annotation><object><name>cat</name></object></annotation>')
    summary = convert_voc12(str(voc), str(sbd))
    assert read_split(str(voc / 'ImageSets/Segmentation/train_aug.txt')) == ['a', 'b', 'd', 'e']
    assert summary['splits']['train_aug'] == 4 and summary['class_counts']['cat'] == 5


def test_dataset_items(voc_samples_root, voc_samples_labels):
    ds = VOC12ClsDataset(data_root=voc_samples_root, ann_file='ImageSets/Segmentation/val.txt',
                         cls_labels=voc_samples_labels, seg_dir='SegmentationClass',
                         pipeline=PIPELINE)
    assert len(ds) == 4
    item = ds[0]
    sample = item['data_samples']
    assert item['inputs'].shape == (3, 513, 513)
    assert sample['ori_shape'] == (513, 513) and sample['gt_label'].shape == (20,)
    assert sample['gt_seg'].shape == (513, 513) and sample['name'] == ds.get_data_info(0)['name']


def _copy_demo(demo_root, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    return root


def test_missing_and_corrupt_files(demo_root, tmp_path):
    root = _copy_demo(demo_root, tmp_path)
    kw = dict(data_root=str(root), ann_file='ImageSets/Segmentation/train.txt',
              classes=DEMO_CLASSES, pipeline=PIPELINE[:1] + PIPELINE[2:])
    names = read_split(str(root / 'ImageSets/Segmentation/train.txt'))
    (root / 'JPEGImages' / f'{names[3]}.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=f'{names[3]}.jpg'):
        VOC12ClsDataset(**kw)
    (root / 'JPEGImages' / f'{names[3]}.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    ds = VOC12ClsDataset(**kw)
    with pytest.raises(ValueError, match=f'cannot read image .*{names[3]}.jpg'):
        ds.prepare_data(3)


def test_missing_image_with_other_suffix_names_the_fix(tmp_path):
    from s2c.utils.image_io import read_rgb_image
    Image.new('RGB', (4, 3)).save(tmp_path / 'a.JPG', format='JPEG')
    with pytest.raises(FileNotFoundError, match=r"a.JPG exists: set img_suffix='.JPG'"):
        read_rgb_image(str(tmp_path / 'a.jpg'))
    with pytest.raises(FileNotFoundError, match=r'b.jpg not found$'):
        read_rgb_image(str(tmp_path / 'b.jpg'))


def test_image_modes_converted_to_rgb(demo_root, tmp_path):
    root = _copy_demo(demo_root, tmp_path)
    names = read_split(str(root / 'ImageSets/Segmentation/train.txt'))
    src = Image.open(root / 'JPEGImages' / f'{names[0]}.jpg')
    src.convert('L').save(root / 'JPEGImages' / f'{names[0]}.jpg')
    src.convert('CMYK').save(root / 'JPEGImages' / f'{names[1]}.jpg')
    src.convert('RGBA').save(root / 'JPEGImages' / f'{names[2]}.jpg', format='PNG')
    src.convert('P').save(root / 'JPEGImages' / f'{names[3]}.jpg', format='PNG')
    ds = VOC12ClsDataset(data_root=str(root), ann_file='ImageSets/Segmentation/train.txt',
                         classes=DEMO_CLASSES, pipeline=[dict(type='LoadImageFromFile')])
    for i in range(4):
        img = ds.prepare_data(i)['img']
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    gray = ds.prepare_data(0)['img']
    assert (gray[..., 0] == gray[..., 1]).all()


def test_images_without_foreground_are_left_out(tmp_path):
    root = tmp_path / 'd'
    make_demo_dataset(str(root), seed=1, num_train=6, num_val=1, size=(48, 48))
    labels = np.load(root / 'cls_labels.npy', allow_pickle=True).item()
    names = read_split(str(root / 'ImageSets/Segmentation/train.txt'))
    labels[names[1]] = np.zeros(4, np.float32)
    labels[names[4]] = np.zeros(4, np.float32)
    np.save(root / 'cls_labels.npy', labels, allow_pickle=True)
    ds = VOC12ClsDataset(data_root=str(root), ann_file='ImageSets/Segmentation/train.txt',
                         classes=DEMO_CLASSES, pipeline=[])
    assert len(ds) == 4
    assert [ds.get_data_info(i)['name'] for i in range(4)] == [
        n for n in names if n not in (names[1], names[4])]


def test_missing_cls_labels_says_what_to_run(tmp_path):
    (tmp_path / 'ImageSets/Segmentation').mkdir(parents=True)
    (tmp_path / 'ImageSets/Segmentation/train.txt').write_text('a\n')
    with pytest.raises(FileNotFoundError, match='tools/dataset_converters/voc12.py'):
        VOC12ClsDataset(data_root=str(tmp_path), ann_file='ImageSets/Segmentation/train.txt')


def test_demo_dataset_is_deterministic(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    make_demo_dataset(str(a), seed=5, num_train=3, num_val=1, size=(40, 40))
    make_demo_dataset(str(b), seed=5, num_train=3, num_val=1, size=(40, 40))
    for name in read_split(str(a / 'ImageSets/Segmentation/train.txt')):
        assert (a / 'JPEGImages' / f'{name}.jpg').read_bytes() == \
            (b / 'JPEGImages' / f'{name}.jpg').read_bytes()
        gt = load_label_png(str(a / 'SegmentationClass' / f'{name}.png'))
        assert set(np.unique(gt)) <= {0, 1, 2, 3, 4}


def test_load_se_map_is_a_no_op_without_an_se_map_folder():
    from s2c.datasets.transforms import LoadSEMap
    results = dict(img=np.zeros((2, 3, 3), np.uint8), ori_shape=(2, 3))
    out = LoadSEMap()(dict(results))
    assert 'se_map' not in out and out.keys() == results.keys()
