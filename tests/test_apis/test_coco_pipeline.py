"""COCO end to end on the synthetic COCO: 3 training iterations of the COCO CAM config, CAMs
of val with the 81-class evaluation, and the COCO DeepLab config's first step."""
from __future__ import annotations

import json
import os.path as osp

import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS

from s2c.apis import load_config
from s2c.caches import run_se_map_job
from s2c.datasets import COCO_CLASSES
from s2c.datasets.coco_synthetic import make_synthetic_coco14
from s2c.datasets.converters.coco14 import convert_coco14
from s2c.datasets.segmentation_coco14 import COCO14SegDataset  # noqa: F401  (registers it)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CAM_COCO = osp.join(REPO, 'configs/cam/cam_resnet38d_1xb16-50e_coco14-321x321.py')
S2C_COCO = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb16-50e_coco14-321x321.py')
DL_COCO = osp.join(REPO, 'configs/deeplab/deeplabv2_r101-d8_1xb10-100k_coco14-pseudo-321x321.py')
SMALL = ['model.backbone.pretrained=None', 'model.backbone.width=0.0625',
         'train_dataloader.batch_size=2', 'train_dataloader.drop_last=False',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'param_scheduler.0.end=1',
         'default_hooks.logger.interval=1']


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco2014'))
    make_synthetic_coco14(root)
    assert convert_coco14(root, workers=1, progress=False).ok
    return root


def test_coco_configs_are_the_coco_ones():
    for config in (CAM_COCO, S2C_COCO):
        cfg = load_config(config)
        assert cfg.model.num_classes == 80 and cfg.val_evaluator.num_classes == 81
        ds = cfg.train_dataloader.dataset
        assert ds.type == 'COCO14ClsDataset' and ds.img_dir == 'train2014'
        assert cfg.train_dataloader.batch_size == 16 and cfg.train_cfg.max_epochs == 50
        assert cfg.optim_wrapper.optimizer.lr == 0.01
        crop = [t for t in ds.pipeline if t['type'] == 'RandomCrop'][0]
        assert crop['crop_size'] == 321
    s2c = load_config(S2C_COCO)
    assert s2c.model.cpm.embedding_dir == 'data/coco2014/sam_embeddings/vit_h'
    assert s2c.train_dataloader.dataset.se_map_dir.startswith('se_maps/')


@pytest.mark.slow
def test_cam_training_and_81_class_evaluation_on_synthetic_coco(coco_root, tmp_path, run_tool):
    w = tmp_path / 'w'
    code, _, err = run_tool('train', CAM_COCO, '--data-root', coco_root, '--work-dir', w,
                            '--cfg-options', *SMALL)
    assert code == 0, err
    assert osp.isfile(w / 'epoch_1.pth')
    logs = sorted(w.glob('*/vis_data/scalars.json'))
    lines = [json.loads(line) for line in open(logs[-1])]
    assert sum('loss' in line for line in lines) == 3  # 5 images, batch 2: 3 iterations
    assert any('cam/mIoU' in line for line in lines)
    code, out, err = run_tool('test', CAM_COCO, w / 'epoch_1.pth', '--data-root', coco_root,
                              '--split', 'val', '--out', tmp_path / 'cams', '--scales', 1.0,
                              '--cfg-options', 'model.backbone.width=0.0625')
    assert code == 0, err
    ev = json.load(open(tmp_path / 'cams' / 'cam_eval.json'))
    names = list(ev['per_class_iou'])
    assert ev['scored'] == 2 and len(names) == 81
    assert names[0] == 'background' and names[1:] == list(COCO_CLASSES)
    assert sorted(p.name for p in (tmp_path / 'cams').glob('*.npz')) == [
        'COCO_val2014_000000000073.npz', 'COCO_val2014_000000000074.npz']


def test_coco_deeplab_config_trains_one_step():
    cfg = load_config(DL_COCO, cfg_options={'model.pretrained': None, 'model.backbone.depth': 18,
                                            'model.decode_head.in_channels': 512})
    assert cfg.model.decode_head.num_classes == 81 and cfg.train_cfg.max_iters == 100000
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import DATASETS

        import s2c.datasets.segmentation_coco14  # noqa: F401  (as custom_imports does)
        assert len(DATASETS.get('COCO14SegDataset').METAINFO['classes']) == 81
        model = SEG_MODELS.build(cfg.model)
        x = torch.randn(2, 3, 64, 64)
        assert model(x, mode='tensor').shape == (2, 81, 8, 8)


def test_se_map_cache_of_coco_train_reads_train2014(coco_root, tmp_path):
    cfg = load_config(S2C_COCO, data_root=coco_root)
    summary = run_se_map_job(cfg, provider='felzenszwalb', out=str(tmp_path / 'se'),
                             progress=False)
    assert summary.ok and sorted(summary.done) == [
        f'COCO_train2014_{i:012d}' for i in (9, 25, 30, 36, 42)]
