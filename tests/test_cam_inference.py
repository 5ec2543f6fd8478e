"""Multi-scale CAM inference: equals a slow per-view loop; tools/test.py end to end."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from s2c.cam import load_cams
from s2c.cam.inference import multiscale_cams
from s2c.models import CAMClassifier

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


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


def test_test_tool_writes_cams_and_table(voc_samples_root, voc_samples_labels, tmp_path):
    model = CAMClassifier(backbone=dict(type='ResNet38d', width=0.0625), num_classes=20,
                          feat_dim=8)
    model.init_weights()
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'cams'
    cmd = [sys.executable, 'tools/test.py', 'configs/cam_voc.py', str(ckpt), '--split', 'val',
           '--out', str(out), '--scales', '0.5', '1.0', '--data-root', voc_samples_root,
           '--cfg-options', f'test_dataloader.dataset.cls_labels={voc_samples_labels}',
           'model.backbone.width=0.0625', 'model.feat_dim=8']
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'CAM mIoU' in res.stdout and 'aeroplane' in res.stdout
    files = sorted(p.name for p in out.glob('*.npz'))
    assert len(files) == 4
    keys, cams = load_cams(str(out / files[0]))
    assert cams.shape[1:] == (513, 513) and cams.dtype == np.float32
    assert osp.isfile(out / 'cam_eval.json')
    # second run: everything skipped
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0 and '0 written, 4 already there' in res.stdout


def test_official_checkpoint_accepted(tmp_path):
    from mmengine.config import Config

    from s2c.apis.test import build_classifier
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
