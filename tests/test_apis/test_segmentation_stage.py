"""The segmentation stage: the configs build and train a step, the optimiser follows the
protocol, the pseudo-label check, the test-time modes, and a 4-iteration run on real VOC
images with pseudo-labels made by our own tools."""
from __future__ import annotations

import json
import os.path as osp
import subprocess

import numpy as np
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS as SEG_MODELS
from mmseg.structures import SegDataSample

from s2c.apis import load_config
from s2c.apis.segmentation import (
    build_test_config,
    check_pseudo_labels,
    results_table,
    set_pseudo_label_dir,
)
from s2c.datasets import read_split
from s2c.evaluation.folder_eval import evaluate_folder


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build in mmseg's scope (as its Runner does), whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
V2 = osp.join(REPO, 'configs/deeplab/deeplabv2_r101-d8_1xb10-20k_voc12aug-pseudo-321x321.py')
V2_CAFFE = osp.join(REPO,
                    'configs/deeplab/deeplabv2_r101-caffe-d8_1xb10-20k_voc12aug-pseudo-321x321.py')
V3_WR38 = osp.join(REPO, 'configs/deeplab/deeplabv3_wr38d-d8_1xb10-20k_voc12aug-pseudo-448x448.py')
#: Small versions of each config for CPU tests (the real depth/width otherwise).
SMALL = {
    V2: {'model.pretrained': None, 'model.backbone.depth': 18,
         'model.decode_head.in_channels': 512},
    V2_CAFFE: {'model.backbone.depth': 18, 'model.backbone.init_cfg': None,
               'model.decode_head.in_channels': 512},
    V3_WR38: {'model.backbone.width': 0.0625, 'model.backbone.pretrained': None,
              'model.decode_head.in_channels': 256, 'model.decode_head.channels': 16},
}
LOADERS = {f'{k}.{o}': v for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
           for o, v in (('num_workers', 0), ('persistent_workers', False))}


def _batch(size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        pad_shape=(size, size)))
        label = torch.randint(0, 21, (1, size, size), generator=g)
        label[:, :4] = 255
        s.gt_sem_seg = PixelData(data=label)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('config', [V2, V2_CAFFE, V3_WR38], ids=['v2', 'v2-caffe', 'v3-wr38d'])
def test_config_builds_and_trains_one_step(config):
    cfg = load_config(config, cfg_options=SMALL[config])
    model = SEG_MODELS.build(cfg.model)
    model.init_weights()
    model.train()  # as the Runner does: frozen BatchNorm goes back to eval mode
    data = model.data_preprocessor(_batch(cfg.crop_size[0] // 4), training=True)
    assert data['inputs'].shape[-2:] == cfg.crop_size  # padded to the crop
    losses = model(**data, mode='loss')
    loss_keys = [k for k in losses if 'loss' in k]
    assert loss_keys == ['decode.loss_ce'] and torch.isfinite(losses['decode.loss_ce'])
    losses['decode.loss_ce'].backward()
    head_grads = [p.grad for p in model.decode_head.parameters() if p.requires_grad]
    assert head_grads and all(g is not None and g.abs().sum() > 0 for g in head_grads)
    # The frozen parts stay frozen.
    if config == V3_WR38:
        assert not any(p.requires_grad for p in model.backbone.conv1a.parameters())
        assert all(not m.training for m in model.backbone.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))
    else:
        assert not model.backbone.bn1.weight.requires_grad and not model.backbone.bn1.training
    model.eval()
    with torch.no_grad():
        out = model.predict(model.data_preprocessor(_batch(40), training=False)['inputs'],
                            _batch(40)['data_samples'])
    assert out[0].pred_sem_seg.data.shape == (1, 40, 40)


def test_deeplabv2_optimiser_follows_the_protocol():
    cfg = load_config(V2, cfg_options=SMALL[V2])
    model = SEG_MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base = cfg.optim_wrapper.optimizer.lr
    assert base == 2.5e-4 and cfg.train_dataloader.batch_size == 10
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    head = model.decode_head.aspp[2]
    assert groups[id(head.weight)]['lr'] == pytest.approx(10 * base)
    assert groups[id(head.weight)]['weight_decay'] == pytest.approx(5e-4)
    assert groups[id(head.bias)]['lr'] == pytest.approx(20 * base)
    assert groups[id(head.bias)]['weight_decay'] == 0.0
    assert groups[id(model.backbone.layer3[0].conv2.weight)]['lr'] == pytest.approx(base)
    # Output stride 8, every block dilated (no contraction); ResNet-18's dilated conv is conv1.
    assert [b.conv1.dilation for b in model.backbone.layer4] == [(4, 4)] * 2
    assert [b.conv1.dilation for b in model.backbone.layer3] == [(2, 2)] * 2
    v3 = load_config(V3_WR38, cfg_options=SMALL[V3_WR38])
    assert v3.optim_wrapper.optimizer.lr == 1e-3 and v3.crop_size == (448, 448)
    assert v3.optim_wrapper.paramwise_cfg.custom_keys['decode_head']['lr_mult'] == 10.0


def test_pseudo_label_check_names_missing_images_and_the_fix(tmp_path):
    root = tmp_path / 'VOC2012'
    (root / 'ImageSets/Segmentation').mkdir(parents=True)
    (root / 'ImageSets/Segmentation/train_aug.txt').write_text('a\nb\nc\n')
    cfg = load_config(V2, data_root=str(root))
    pl = tmp_path / 'pl'
    set_pseudo_label_dir(cfg, str(pl))
    assert cfg.train_dataloader.dataset.data_prefix.seg_map_path == str(pl)
    with pytest.raises(FileNotFoundError, match='pseudo-label folder .* not found'):
        check_pseudo_labels(cfg)
    pl.mkdir()
    (pl / 'b.png').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match=r'2 of 3 training images .*\(a, c\).*'
                                                r'make_pseudo_labels.py .*--split train_aug'):
        check_pseudo_labels(cfg)
    for n in 'ac':
        (pl / f'{n}.png').write_bytes(b'')
    assert check_pseudo_labels(cfg) == 3


def test_test_modes_build_the_right_pipelines(tmp_path):
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'x')
    cfg = load_config(V2)
    ss = build_test_config(cfg, str(ckpt), 'ss')
    assert ss.model.type == 'EncoderDecoder' and ss.load_from == str(ckpt)
    assert [t['type'] for t in ss.test_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'PackSegInputs']
    msf = build_test_config(cfg, str(ckpt), 'msf_crf', scales=(0.5, 1.0),
                            pred_dir=str(tmp_path / 'p'))
    assert msf.model.type == 'DenseCRFSegTTAModel' and msf.model.crf is True
    assert msf.model.module.type == 'EncoderDecoder'
    tta = msf.test_dataloader.dataset.pipeline[1]
    assert [t['scale_factor'] for t in tta['transforms'][0]] == [0.5, 1.0]
    assert [t['prob'] for t in tta['transforms'][1]] == [0.0, 1.0]
    assert msf.test_evaluator.pred_dir == str(tmp_path / 'p')
    ss_crf = build_test_config(cfg, str(ckpt), 'ss_crf')
    views = ss_crf.test_dataloader.dataset.pipeline[1]['transforms']
    assert all(len(v) == 1 for v in views) and ss_crf.model.crf is True
    assert cfg.model.type == 'EncoderDecoder'  # the input config is not modified
    with pytest.raises(KeyError, match='unknown test mode'):
        build_test_config(cfg, str(ckpt), 'crf')
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        build_test_config(cfg, str(tmp_path / 'none.pth'), 'ss')


def test_results_table():
    table = results_table({'ss': {'mIoU': 50.0, 'IoU.background': 80.0, 'IoU.cat': 20.0},
                           'msf': {'mIoU': 52.125, 'IoU.background': 81.0, 'IoU.cat': 23.25}})
    assert table.splitlines() == [
        '| class | single scale | multi-scale + flip |', '|---|---:|---:|',
        '| background | 80.00 | 81.00 |', '| cat | 20.00 | 23.25 |',
        '| **mIoU** | **50.00** | **52.12** |']


@pytest.mark.slow
def test_four_iterations_on_voc_samples_with_our_pseudo_labels(voc_samples_root, tmp_path,
                                                               run_tool):
    """CAM stand-ins -> CRF pseudo-labels (our tools) -> 4 DeepLab iterations -> val in two
    test modes; the reported mIoU equals eval_seg on the written predictions."""
    root, w = voc_samples_root, tmp_path / 'w'
    code, _, err = run_tool('analysis_tools/gt_standin_cams', root, '--split', 'train',
                            '--out', tmp_path / 'cams')
    assert code == 0, err
    cam_config = osp.join(REPO, 'configs/cam/cam_resnet38d_1xb8-40e_voc12aug-256x256.py')
    code, _, err = run_tool('make_pseudo_labels', cam_config,
                            '--data-root', root, '--cams', tmp_path / 'cams', '--out',
                            tmp_path / 'pl', '--method', 'crf', '--split', 'train')
    assert code == 0, err
    small = [f'{k}={v}' for k, v in {**SMALL[V2], **LOADERS}.items()]
    code, _, err = run_tool(
        'train_seg', V2, '--data-root', root, '--pseudo-labels', tmp_path / 'pl',
        '--work-dir', w, '--cfg-options', *small, 'train_dataloader.batch_size=2',
        'train_dataloader.dataset.ann_file=ImageSets/Segmentation/train.txt',
        'train_cfg.max_iters=4', 'train_cfg.val_interval=4')
    assert code == 0, err
    assert osp.isfile(w / 'iter_4.pth')
    code, out, err = run_tool('test_seg', V2, w / 'iter_4.pth', '--data-root', root,
                              '--work-dir', w, '--modes', 'ss', 'ss_crf', '--out', w / 'pred',
                              '--cfg-options', *small)
    assert code == 0, err
    results = json.load(open(w / 'test_results.json'))['results']
    assert set(results) == {'ss', 'ss_crf'} and '| **mIoU** |' in out
    names = read_split(osp.join(root, 'ImageSets/Segmentation/val.txt'))
    for mode in ('ss', 'ss_crf'):
        ours = evaluate_folder(str(w / 'pred' / mode), osp.join(root, 'SegmentationClass'), names,
                               progress=False)
        assert results[mode]['mIoU'] == pytest.approx(100 * ours.scores['miou'], abs=0.01)
        assert np.isfinite(results[mode]['IoU.background'])


def test_dist_train_script_usage():
    proc = subprocess.run(['bash', osp.join(REPO, 'tools/dist_train.sh'), 'only-config'],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and 'usage:' in proc.stderr


def test_balanced_loss_swaps_in_as_the_readme_says():
    cfg = load_config(V2, cfg_options={**SMALL[V2],
                                       'model.decode_head.loss_decode.type': 'ClassBalancedCELoss'})
    model = SEG_MODELS.build(cfg.model)
    data = model.data_preprocessor(_batch(40), training=True)
    losses = model(**data, mode='loss')
    assert 'decode.loss_ce_balanced' in losses and torch.isfinite(losses['decode.loss_ce_balanced'])
    cfg.model.decode_head.loss_decode.use_sigmoid = True
    with pytest.raises(ValueError, match='use_sigmoid'):
        SEG_MODELS.build(cfg.model)
