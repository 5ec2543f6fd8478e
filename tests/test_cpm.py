"""CPM: label composition, geometry of the cached path, targets end to end."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from s2c.datasets.transforms import (
    Geometry,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRescaleLongSide,
)
from s2c.models.losses.cpm import CPM, compose_cpm_labels, stability_scores
from s2c.sam.backends import ImageFeatures

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_compose_labels_and_background_rule():
    # 1 image, 3 classes, 2x4 crop; prompts for class 0 and class 2
    logits = torch.tensor([[[2.0, 2.0, -1.0, -1.0], [2.0, -1.0, -1.0, -1.0]],
                           [[1.0, 4.0, 3.0, -1.0], [-1.0, -1.0, -1.0, -1.0]]])
    cams = torch.zeros(1, 3, 2, 4)
    cams[0, 0] = 0.5
    cams[0, 2] = torch.tensor([[0.2, 0.2, 0.8, 0.0], [0.0, 0.0, 0.0, 0.0]])
    valid = torch.ones(1, 2, 4, dtype=torch.bool)
    valid[0, 1, 3] = False
    img, cls = torch.tensor([0, 0]), torch.tensor([0, 2])
    lab = compose_cpm_labels(logits, cams, img, cls, valid, 3, 'logit_x_meancam')
    # class 0: mask 3 px, mean CAM 0.5 -> conf 1.0 at its pixels; class 2: mask 3 px, mean 0.4
    # -> conf 0.4, 1.6, 1.2: pixel (0,1) class 2 (1.6 > 1.0), (0,2) class 2, (0,0) class 0
    assert lab.tolist() == [[[0, 2, 2, 3], [0, 3, 3, 255]]]
    lab = compose_cpm_labels(logits, cams, img, cls, valid, 3, 'stability_x_meancam')
    # stability: class 0 -> |>1|=3 / |>-1|=3 = 1 -> 0.5; class 2 -> |>1|=2 / 3 -> 0.267
    assert lab.tolist() == [[[0, 0, 2, 3], [0, 3, 3, 255]]]
    with pytest.raises(ValueError, match='confidence'):
        compose_cpm_labels(logits, cams, img, cls, valid, 3, 'area')


def test_stability_score_by_hand():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    assert stability_scores(logits).tolist() == pytest.approx([1 / 3])
    assert stability_scores(torch.full((1, 2, 2), -5.0)).tolist() == [1.0]


def test_cached_logits_resampled_into_the_crop():
    """A mask of the original frame, as SAM low-res logits, lands where the transforms put it."""
    h0, w0, s = 60, 80, 256                       # tiny SAM: 256 px input frame
    in_h, in_w = int(h0 * s / w0 + 0.5), s        # 192 x 256
    mask = np.zeros((h0, w0), np.uint8)
    mask[10:50, 20:70] = 1
    # low-res logits (64 x 64) over the padded 256 x 256 input frame
    side = s // 4
    yc = (np.arange(side) + 0.5) * 4 * h0 / in_h   # low-res pixel centres in original pixels
    xc = (np.arange(side) + 0.5) * 4 * w0 / in_w
    inside = (yc[:, None] < h0) & (xc[None, :] < w0)
    src = mask[np.minimum(yc, h0 - 1).astype(int)[:, None], np.minimum(xc, w0 - 1).astype(int)]
    logits = torch.from_numpy(np.where(inside & (src > 0), 8.0, -8.0)).float()[None]
    np.random.seed(2)
    results = dict(img=np.zeros((h0, w0, 3), np.uint8), gt_seg=mask,
                   geometry=Geometry.identity(h0, w0), ori_shape=(h0, w0))
    results = RandomRescaleLongSide(100, 100)(results)
    results = RandomHorizontalFlip(prob=1.0)(results)
    results = RandomCrop(64)(results)
    cpm = CPM(backend=dict(type='sam'), embedding_source='cached', embedding_dir='unused')
    feats = ImageFeatures(embeddings=torch.zeros(1, 256, 16, 16),
                          input_sizes=torch.tensor([[in_h, in_w]]),
                          original_sizes=torch.tensor([[h0, w0]]), img_size=s)
    crop = cpm._to_crop(logits, torch.tensor([0]), [dict(geometry=results['geometry'])], feats,
                        (64, 64))
    expected = results['gt_seg'] == 1
    got = (crop[0] > 0).numpy()
    valid = results['valid']
    agree = (got == expected)[valid].mean()
    assert agree > 0.97 and expected[valid].sum() > 500


@pytest.fixture(scope='module')
def demo_caches(demo_root, tmp_path_factory):
    """Felzenszwalb SE maps and tiny-SAM embeddings of the demo training split."""
    from s2c.sam.cache_jobs import run_embedding_job, run_se_map_job
    cfg = Config.fromfile(osp.join(REPO, 'configs/s2c_demo.py'))
    from s2c.apis.config import set_data_root
    set_data_root(cfg, demo_root)
    out = tmp_path_factory.mktemp('caches')
    cfg.se_maps.root = str(out / 'se')
    cfg.sam_embeddings.root = str(out / 'emb')
    assert run_se_map_job(cfg, progress=False, num_workers=0).ok
    assert run_embedding_job(cfg, progress=False, num_workers=0).ok
    return cfg


def _batch(cfg, n=3):
    from s2c.apis.config import resolve_sam_settings
    from s2c.datasets import VOC12ClsDataset
    resolve_sam_settings(cfg)
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.pop('type')
    ds = VOC12ClsDataset(**ds_cfg)
    items = [ds[i] for i in range(n)]
    inputs = torch.stack([it['inputs'] for it in items])
    return inputs, [it['data_samples'] for it in items]


@pytest.mark.parametrize('source', ['cached', 'online'])
def test_make_targets_end_to_end(demo_caches, source):
    from s2c.registry import MODELS
    cfg = demo_caches.copy()
    inputs, samples = _batch(cfg)
    model = MODELS.build(dict(type='CAMClassifier', backbone=dict(type='ResNet38d', width=0.0625),
                              num_classes=4, feat_dim=8))
    model.init_weights()
    cpm_cfg = cfg.model.cpm.copy()
    cpm_cfg.pop('type')
    cpm_cfg['embedding_source'] = source
    cpm = CPM(**cpm_cfg)
    labels = torch.stack([s['gt_label'] for s in samples])
    model.train()
    targets = cpm.make_targets(model, inputs, samples, labels)
    assert model.training and targets.shape == (3, 128, 128) and targets.dtype == torch.long
    for i, s in enumerate(samples):
        values = set(targets[i].unique().tolist())
        allowed = set(torch.nonzero(s['gt_label']).flatten().tolist()) | {4, 255}
        assert values <= allowed
        assert (targets[i][~s['valid']] == 255).all() and (targets[i][s['valid']] != 255).all()
    out = model(inputs, mode='tensor')
    loss = cpm.loss(out['cam'], labels, targets, (128, 128))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.fc9.weight.grad is not None
    assert 'backend' not in dict(model.named_modules())  # SAM stays out of the state dict


def _cached_cpm(cfg):
    cpm_cfg = cfg.model.cpm.copy()
    cpm_cfg.pop('type')
    cpm_cfg['embedding_source'] = 'cached'
    return CPM(**cpm_cfg)


def test_refine_runs_fp32_inside_autocast(demo_caches):
    """--amp: CPM's SAM part must not run (or crash) in half precision."""
    from s2c.cam.inference import batch_multiscale_cams
    from s2c.registry import MODELS
    cfg = demo_caches.copy()
    inputs, samples = _batch(cfg)
    model = MODELS.build(dict(type='CAMClassifier', backbone=dict(type='ResNet38d', width=0.0625),
                              num_classes=4, feat_dim=8))
    model.init_weights()
    model.eval()
    cpm = _cached_cpm(cfg)
    labels = torch.stack([s['gt_label'] for s in samples])
    with torch.no_grad():
        cams = batch_multiscale_cams(model, inputs, labels, cpm.scales)
    reference = cpm.refine(cams, labels, samples)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        under_amp = cpm.refine(cams, labels, samples)
        model.train()
        targets = cpm.make_targets(model, inputs, samples, labels)   # MS CAMs in bf16
    assert torch.equal(under_amp, reference)
    assert targets.dtype == torch.long and targets.shape == reference.shape
    assert model.training


def test_peaks_in_the_crop_padding_are_not_prompted(demo_caches):
    cfg = demo_caches.copy()
    _, samples = _batch(cfg, n=1)
    cpm = _cached_cpm(cfg)
    cls = int(torch.nonzero(samples[0]['gt_label'])[0])
    labels = torch.zeros(1, 4)
    labels[0, cls] = 1.0                        # one prompt: this class only
    cams = torch.zeros(1, 4, 128, 128)
    cams[0, cls] = 0.3
    cams[0, cls, 64, 64] = 0.9                  # the peak inside the image
    cams[0, cls, 5, 5] = 1.0                    # the global max, in the padding
    samples[0]['valid'] = torch.ones(128, 128, dtype=torch.bool)
    samples[0]['valid'][:20] = False
    seen = []
    original = cpm.prompt_peaks

    def spy(c, lab):
        out = original(c, lab)
        seen.append(out[2])
        return out

    cpm.prompt_peaks = spy
    cpm.refine(cams, labels, samples)
    (peaks,), = seen
    assert peaks.tolist() == [[64, 64]]
