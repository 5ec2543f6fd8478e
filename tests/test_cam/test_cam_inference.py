"""Multi-scale CAM inference: equals a slow per-view loop; tools/test.py end to end."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from PIL import Image

from s2c.apis import build_classifier, run_cam_inference, set_data_root
from s2c.cam import load_cams, multiscale_cams, read_cam_manifest
from s2c.cam.inference import infer_cam_dir
from s2c.datasets import load_cls_labels, read_split
from s2c.models import CAMClassifier
from s2c.pseudo_labels import read_bg_threshold
from s2c.utils import ManifestMismatchError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CAM_VOC = 'configs/cam/cam_resnet38d_1xb8-40e_voc12aug-256x256.py'
CAM_DEMO = osp.join(REPO, 'configs/demo/cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


def _tiny_model(num_classes=4):
    torch.manual_seed(0)
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.0625), num_classes=num_classes,
                          feat_dim=8)
    model.init_weights()
    return model.eval()


def test_eight_views_equal_reference_loop():
    model = _tiny_model()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (37, 51, 3), dtype=np.uint8)
    labels = np.array([1, 0, 1, 1], np.float32)
    keys, cams = multiscale_cams(model, image, labels)
    # reference: every view on its own, in float64 accumulation
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    total = np.zeros((4, 37, 51))
    for s in (0.5, 1.0, 1.5, 2.0):
        img = np.asarray(Image.fromarray(image).resize((round(51 * s), round(37 * s)),
                                                       Image.BICUBIC))
        x = torch.from_numpy(((img / 255.0 - mean) / std).transpose(2, 0, 1)).float()[None]
        for flip in (False, True):
            xin = x.flip(-1) if flip else x
            with torch.no_grad():
                cam = model(xin, mode='tensor')['cam']
            cam = F.relu(F.interpolate(cam, (37, 51), mode='bilinear', align_corners=False))
            cam = cam.flip(-1) if flip else cam
            total += cam[0].double().numpy()
    total *= labels[:, None, None]
    ref = total / (total.reshape(4, -1).max(1)[:, None, None] + 1e-5)
    assert keys.tolist() == [0, 2, 3]
    np.testing.assert_allclose(cams, ref[[0, 2, 3]], atol=1e-5)
    assert cams.max() < 1.0 and cams.max() > 0.99


def test_test_tool_writes_cams_and_table(voc_samples_root, voc_samples_labels, tmp_path,
                                         run_tool):
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.0625), num_classes=20,
                          feat_dim=8)
    model.init_weights()
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'cams'
    args = [CAM_VOC, str(ckpt), '--split', 'val', '--out', str(out), '--scales', '0.5', '1.0',
            '--data-root', voc_samples_root,
            '--cfg-options', f'test_dataloader.dataset.cls_labels={voc_samples_labels}',
            'model.backbone.width=0.0625', 'model.feat_dim=8']
    # once as a script, as users run it
    res = subprocess.run([sys.executable, 'tools/test.py', *args], cwd=REPO, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'CAM mIoU' in res.stdout and 'aeroplane' in res.stdout
    files = sorted(p.name for p in out.glob('*.npz'))
    assert len(files) == 4
    keys, cams = load_cams(str(out / files[0]))
    assert cams.shape[1:] == (513, 513) and cams.dtype == np.float32
    assert osp.isfile(out / 'cam_eval.json')
    # second run: everything skipped
    code, stdout, _ = run_tool('test', *[osp.join(REPO, a) if a == CAM_VOC else a for a in args])
    assert code == 0 and '0 written, 4 already there' in stdout


def test_official_checkpoint_accepted(tmp_path):
    model = _tiny_model(20)
    official = {'module.' + k: v for k, v in model.backbone.state_dict().items()}
    official['module.fc8.weight'] = model.fc8.weight.detach()
    official['module.fc9.weight'] = model.fc9.weight.detach()
    torch.save(official, tmp_path / '005net_main.pth')
    cfg = Config(dict(model=dict(type='CAMClassifier', backbone=dict(
        type='ResNet38d', width=0.0625, pretrained='missing.pth'), num_classes=20, feat_dim=8)))
    loaded = build_classifier(cfg, str(tmp_path / '005net_main.pth'), device='cpu')
    torch.testing.assert_close(loaded.fc9.weight, model.fc9.weight)
    with pytest.raises(KeyError, match='missing'):
        torch.save({'state_dict': {'fc9.weight': model.fc9.weight}}, tmp_path / 'bad.pth')
        build_classifier(cfg, str(tmp_path / 'bad.pth'), device='cpu')


def _demo_cfg(demo_root, tmp_path):
    cfg = Config.fromfile(CAM_DEMO)
    set_data_root(cfg, demo_root)
    cfg.model.backbone.width = 0.0625
    cfg.model.feat_dim = 8
    cfg.work_dir = str(tmp_path / 'work')
    return cfg


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.0625), num_classes=4,
                          feat_dim=8)
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


def test_cam_folder_is_keyed_by_checkpoint_and_views(demo_root, tmp_path):
    cfg = _demo_cfg(demo_root, tmp_path)
    a, b = _checkpoint(tmp_path / 'a.pth', 0), _checkpoint(tmp_path / 'b.pth', 1)
    out = str(tmp_path / 'cams')
    kw = dict(split='val', out_dir=out, scales=(1.0,), flip=False, device='cpu')
    first = run_cam_inference(cfg, a, **kw)
    assert len(first.summary.done) == 4 and first.evaluation['scored'] == 4
    keys, cams_a = load_cams(osp.join(out, 'demo_00016.npz'))
    assert read_cam_manifest(out)['key']['scales'] == [1.0]
    assert len(run_cam_inference(cfg, a, **kw).summary.skipped) == 4  # resume: same maker
    with pytest.raises(ManifestMismatchError, match='checkpoint_sha256'):
        run_cam_inference(cfg, b, **kw)                             # another checkpoint
    with pytest.raises(ManifestMismatchError, match='flip'):
        run_cam_inference(cfg, a, **dict(kw, flip=True))
    again = run_cam_inference(cfg, b, **dict(kw, overwrite=True))
    assert len(again.summary.done) == 4
    _, cams_b = load_cams(osp.join(out, 'demo_00016.npz'))
    assert not np.array_equal(cams_a, cams_b)
    os.remove(osp.join(out, 'cams_manifest.json'))                  # CAMs of unknown origin
    with pytest.raises(ManifestMismatchError, match='unknown origin'):
        run_cam_inference(cfg, b, **kw)
    with open(osp.join(out, 'cams_manifest.json'), 'w') as f:      # truncated manifest
        f.write('{"kind": "ca')
    with pytest.raises(ValueError, match='unreadable.*--overwrite'):
        run_cam_inference(cfg, b, **kw)


def test_no_label_image_and_missing_ground_truth(demo_root, tmp_path):
    cfg = _demo_cfg(demo_root, tmp_path)
    labels = load_cls_labels(osp.join(demo_root, 'cls_labels.npy'))
    labels['demo_00016'] = np.zeros_like(labels['demo_00016'])     # no foreground class
    np.save(tmp_path / 'labels.npy', labels)
    cfg.test_dataloader.dataset.cls_labels = str(tmp_path / 'labels.npy')
    cfg.test_dataloader.dataset.seg_dir = str(tmp_path / 'no_gt')  # train_aug-like: no GT
    out = str(tmp_path / 'cams')
    s = run_cam_inference(cfg, _checkpoint(tmp_path / 'a.pth', 0), split='val', out_dir=out,
                          scales=(1.0,), flip=False, device='cpu')
    assert len(s.summary.done) == 4 and s.summary.ok
    keys, cams = load_cams(osp.join(out, 'demo_00016.npz'))
    w, h = Image.open(osp.join(demo_root, 'JPEGImages', 'demo_00016.jpg')).size
    assert keys.shape == (0,) and cams.shape == (0, h, w)
    (tmp_path / 'no_gt').mkdir()
    s = run_cam_inference(cfg, _checkpoint(tmp_path / 'a.pth', 0), split='val', out_dir=out,
                          scales=(1.0,), flip=False, device='cpu')
    ev = s.evaluation
    assert ev['scored'] == 0 and len(ev['no_gt']) == 4 and not ev['failed']
    assert ev['bg_threshold'] is None
    with open(osp.join(out, 'cam_eval.json')) as f:
        assert json.load(f)['bg_threshold'] is None
    with pytest.raises(ValueError, match='finite'):
        read_bg_threshold(osp.join(out, 'cam_eval.json'))


def test_cams_of_degraded_images_have_their_own_key(demo_root, tmp_path):
    """degradation='NAME:LEVEL': the images are degraded before inference (other CAMs) and
    the folder's key names the degradation, so clean CAMs never resume into it."""
    cfg = _demo_cfg(demo_root, tmp_path)
    ckpt = _checkpoint(tmp_path / 'a.pth', 0)
    kw = dict(split='val', scales=(1.0,), flip=False, device='cpu', evaluate=False)
    run_cam_inference(cfg, ckpt, out_dir=str(tmp_path / 'clean'), **kw)
    out = str(tmp_path / 'noise')
    res = run_cam_inference(cfg, ckpt, out_dir=out, degradation='gaussian_noise:5', **kw)
    assert len(res.summary.done) == 4
    assert read_cam_manifest(out)['key']['degradation'] == dict(name='gaussian_noise', level=5,
                                                                seed=0)
    _, clean = load_cams(osp.join(tmp_path / 'clean', 'demo_00016.npz'))
    _, noisy = load_cams(osp.join(out, 'demo_00016.npz'))
    assert np.abs(clean.astype(np.float32) - noisy.astype(np.float32)).max() > 1e-3
    with pytest.raises(ManifestMismatchError, match='degradation'):
        run_cam_inference(cfg, ckpt, out_dir=out, **kw)


def test_non_finite_cams_are_failures_never_files(demo_root, tmp_path):
    """A model with NaN weights gives NaN CAMs: each image is reported, no CAM file exists."""
    model = _tiny_model()
    with torch.no_grad():
        model.backbone.conv1a.weight.fill_(float('nan'))
    names = read_split(osp.join(demo_root, 'ImageSets/Segmentation/val.txt'))[:2]
    labels = load_cls_labels(osp.join(demo_root, 'cls_labels.npy'))
    summary = infer_cam_dir(model, names, osp.join(demo_root, 'JPEGImages'), labels,
                            str(tmp_path / 'cams'), scales=(1.0,), flip=False, progress=False)
    assert summary.done == [] and sorted(summary.failures.names('non_finite_cam')) == names
    cams = tmp_path / 'cams'
    assert not cams.exists() or not [f for f in os.listdir(cams) if f.endswith('.npz')]
