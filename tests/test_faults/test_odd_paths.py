"""Paths with spaces and non-ASCII characters through the tools a run uses: data root,
caches, CAMs, pseudo-labels, evaluation, visualisation, training."""
from __future__ import annotations

import os
import os.path as osp

import pytest

from s2c.cam import write_gt_standin_cams
from s2c.datasets import read_split
from s2c.datasets.demo import make_demo_dataset

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')
CAM_DEMO = osp.join(REPO, 'configs/demo/cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


@pytest.mark.slow
def test_spaces_and_non_ascii_paths_through_the_tools(tmp_path, run_tool):
    base = tmp_path / 'my data' / 'démo ünïcode'
    root = str(base / 'VOC 2012')
    make_demo_dataset(root, seed=2, num_train=8, num_val=3, size=(96, 96))
    names = read_split(osp.join(root, 'ImageSets/Segmentation/train.txt'))
    code, _, err = run_tool('cache_se_maps', S2C_DEMO, '--data-root', root, '--out',
                            base / 'se maps', '--no-progress')
    assert code == 0, err
    code, _, err = run_tool('cache_sam_embeddings', S2C_DEMO, '--data-root', root, '--out',
                            base / 'emb é', '--no-progress')
    assert code == 0, err
    assert len([f for f in os.listdir(base / 'se maps') if f.endswith('.png')]) == len(names)
    cams = str(base / 'cams ü')
    assert write_gt_standin_cams(osp.join(root, 'SegmentationClass'), names, cams,
                                 num_classes=4, progress=False).ok
    for method in ('crf', 'se_merge'):
        code, _, err = run_tool('make_pseudo_labels', CAM_DEMO, '--data-root', root, '--cams',
                                cams, '--out', base / f'pl {method}', '--method', method,
                                '--split', 'train', '--se-dir', base / 'se maps',
                                '--bg-threshold', '0.3', '--workers', '1')
        assert code == 0, err
    code, out, err = run_tool('analysis_tools/eval_seg', base / 'pl crf', '--data-root', root,
                              '--split', 'train', '--num-classes', 5)
    assert code == 0 and f'over {len(names)}/{len(names)} images' in out, err
    code, _, err = run_tool('analysis_tools/visualize', '--data-root', root, '--split',
                            'train', '--cams', cams, '--labels', base / 'pl crf', '--max', 2,
                            '--out', base / 'vis ö')
    assert code == 0, err
    code, _, err = run_tool(
        'train', CAM_DEMO, '--data-root', root, '--work-dir', base / 'work dir', '--cfg-options',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_dataloader.batch_size=4', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
        'param_scheduler.0.end=1')
    assert code == 0, err
    assert osp.isfile(base / 'work dir' / 'epoch_1.pth')
    code, out, err = run_tool('test', CAM_DEMO, base / 'work dir' / 'epoch_1.pth', '--data-root',
                              root, '--split', 'val', '--out', base / 'cams val ß', '--scales',
                              1.0)
    assert code == 0 and 'CAM mIoU' in out, err
