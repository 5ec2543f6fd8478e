"""CPM: label composition, the crop <-> SAM frames, build-time validation, targets end to end."""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torchvision import transforms as tvt

from s2c.cam import batch_multiscale_cams
from s2c.datasets import VOC12ClsDataset
from s2c.datasets.transforms import RandomCrop, RandomHorizontalFlip, RandomRescaleLongSide
from s2c.models.cpm import CPM, CachedFrames, OnlineFrames, compose_cpm_labels
from s2c.registry import MODELS, PROMPT_BACKENDS
from s2c.sam.backends import SamPromptBackend
from s2c.sam.stability import stability_score
from s2c.structures import Geometry, ImageFeatures
from s2c.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, normalize_image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


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
    """One stability score for AMG and CPM: an empty mask is NaN (the library's 0/0) and
    never reaches a CPM label (it covers no pixel)."""
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    assert stability_score(logits).tolist() == pytest.approx([1 / 3])
    valid = torch.tensor([[[True, False, True, True]]])
    assert stability_score(logits, valid=valid).tolist() == pytest.approx([1 / 2])
    assert torch.isnan(stability_score(torch.full((1, 2, 2), -5.0))).all()
    # class 1's mask is empty: the labels are those of class 0 alone
    both = torch.stack([torch.tensor([[2.0, -3.0], [2.0, -3.0]]), torch.full((2, 2), -5.0)])
    cams = torch.full((1, 2, 2, 2), 0.5)
    lab = compose_cpm_labels(both, cams, torch.tensor([0, 0]), torch.tensor([0, 1]),
                             torch.ones(1, 2, 2, dtype=torch.bool), 2, 'stability_x_meancam')
    assert lab.tolist() == [[[0, 2], [0, 2]]]


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
    feats = ImageFeatures(embeddings=torch.zeros(1, 256, 16, 16),
                          input_sizes=torch.tensor([[in_h, in_w]]),
                          original_sizes=torch.tensor([[h0, w0]]), img_size=s)
    frames = CachedFrames([results['geometry']], feats, (64, 64), ['x'])
    crop = frames.logits_to_crop(logits, torch.tensor([0]))
    expected = results['gt_seg'] == 1
    got = (crop[0] > 0).numpy()
    valid = results['valid']
    agree = (got == expected)[valid].mean()
    assert agree > 0.97 and expected[valid].sum() > 500
    # ... and the crop's CAM goes the other way onto the embedding grid (PerSAM references):
    # each grid cell takes the crop's value at its centre (0 outside the crop and the image).
    crop_map = (expected & valid).astype(np.float32)
    grid = frames.cams_to_grid(torch.from_numpy(crop_map)[None, None], (16, 16))[0, 0].numpy()
    yc = (np.arange(16) + 0.5) * 16 * h0 / in_h     # grid cell centres in original pixels
    xc = (np.arange(16) + 0.5) * 16 * w0 / in_w
    xy = np.stack(np.broadcast_arrays(xc[None, :], yc[:, None]), -1)
    at = results['geometry'].from_original(xy)       # continuous crop coordinates
    col, row = np.floor(at[..., 0]).astype(int), np.floor(at[..., 1]).astype(int)
    inside = (col >= 0) & (col < 64) & (row >= 0) & (row < 64) & (xy[..., 0] < w0) \
        & (xy[..., 1] < h0)
    want = np.where(inside, crop_map[row.clip(0, 63), col.clip(0, 63)], 0.0)
    assert ((grid > 0.5) == (want > 0.5)).mean() > 0.95 and want.sum() >= 4
    assert np.abs(grid[~inside]).max() < 0.5 and np.abs(grid[yc >= h0]).max() == 0
    # a peak at a crop pixel centre lands on the same original pixel in SAM's input frame
    xy = frames.points([0], [np.array([[10, 20]])])[0][0]
    orig = results['geometry'].pixel_centres_to_original(np.array([[10, 20]]))[0]
    np.testing.assert_allclose((xy + 0.5) * [w0 / in_w, h0 / in_h], orig, atol=1e-9)


def test_online_frames_follow_the_official_code():
    frames = OnlineFrames((64, 128), 256)
    pts = frames.points([0], [np.array([[10, 20]])])[0]
    np.testing.assert_allclose(pts, [[20 * 256 / 128, 10 * 256 / 64]])
    rgb = frames.sam_input(torch.zeros(2, 3, 64, 128))       # the mean colour
    assert rgb.shape == (2, 3, 256, 256)
    assert rgb[0, :, 0, 0].tolist() == [123.0, 116.0, 103.0]  # ImageNet mean x 255, floored
    logits = torch.randn(3, 64, 64)
    assert frames.logits_to_crop(logits, torch.zeros(3)).shape == (3, 64, 128)
    assert frames.cams_to_grid(torch.rand(2, 4, 64, 128), (16, 16)).shape == (2, 4, 16, 16)


def test_online_sam_input_is_the_official_bytes():
    """Official chain: normalise in float64 ((v / 255. - m) / s, stored as float32), de-normalise
    with Normalize(mean=-m/s, std=1/s) in float32, x 255, resize with align_corners=True,
    truncate to uint8. Some values land a hair below their integer and lose a grey level:
    red (1, 3, 6, 8) -> (0, 2, 6, 8), green (75, 130, 150, 169) -> (74, 129, 149, 168), blue
    (2, 33, 34, 5) -> (1, 32, 33, 4). Normalising in float32 arithmetic instead gives red
    (0, 2, 5, 7) and green (75, 130, 150, 169): other bytes."""
    img = np.zeros((1, 4, 3), np.uint8)
    img[0, :, 0] = [1, 3, 6, 8]
    img[0, :, 1] = [75, 130, 150, 169]
    img[0, :, 2] = [2, 33, 34, 5]
    x = torch.from_numpy(normalize_image(img)).permute(2, 0, 1)[None]
    rgb = OnlineFrames((1, 4), 4).sam_input(x)      # 1 x 4 -> 4 x 4: every row the same
    assert rgb[0, :, 0].tolist() == [[0, 2, 6, 8], [74, 129, 149, 168], [1, 32, 33, 4]]
    assert (rgb == rgb[:, :, :1]).all()
    # equal to torchvision's Normalize with the official Python-double constants, on random
    # crops with a resize
    x = torch.randn(2, 3, 24, 40)
    denorm = tvt.Normalize(mean=[-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)],
                           std=[1 / s for s in IMAGENET_STD])
    official = torch.stack([denorm(im) for im in x]) * 255
    official = F.interpolate(official, (64, 64), mode='bilinear', align_corners=True)
    got = OnlineFrames((24, 40), 64).sam_input(x)
    assert torch.equal(got, official.clamp(0, 255).to(torch.uint8).float())


def test_normalisation_is_the_official_float64_arithmetic():
    """Every uint8 value of every channel: (v / 255. - m) / s in double precision, rounded to
    float32 once (official tools/imutils.py normalize). Float32 arithmetic would change 491
    of these 768 values in the last bit."""
    v = np.arange(256, dtype=np.uint8)
    got = normalize_image(np.stack([v, v, v], -1)[None])[0]
    for c, (m, s) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        want = np.array([(float(k) / 255.0 - m) / s for k in range(256)]).astype(np.float32)
        np.testing.assert_array_equal(got[:, c], want)
    in_float32 = (v[:, None].astype(np.float32) / np.float32(255) - np.float32(IMAGENET_MEAN)) \
        / np.float32(IMAGENET_STD)
    assert (in_float32 != got).sum() == 491


def test_sam_output_chain_differs_from_thresholding_the_resized_logits():
    """Low-res logits (2 x 2, S = 8) with columns (1, -8.5) onto a 5 x 5 crop. Direct: column 1
    samples 0.9 * 1 + 0.1 * (-8.5) = 0.05 > 0. SAM's chain: 2 -> 8 gives
    (1, 1, -0.1875, -2.5625, -4.9375, -7.3125, -8.5, -8.5), then 8 -> 5 samples column 1 at
    0.1 * 1 + 0.9 * (-0.1875) < 0: the official mask is one column narrower."""
    logits = torch.tensor([[[1.0, -8.5], [1.0, -8.5]]])
    frames = OnlineFrames((5, 5), 8)
    index = torch.zeros(1, dtype=torch.long)
    direct = frames.logits_to_crop(logits, index)
    assert direct[0, 0].tolist() == pytest.approx([1.0, 0.05, -3.75, -7.55, -8.5], abs=1e-5)
    assert (direct[0] > 0).int().tolist() == [[1, 1, 0, 0, 0]] * 5
    chain = frames.masks_to_crop(logits, index)
    assert chain[0].int().tolist() == [[1, 0, 0, 0, 0]] * 5
    # CPM composes the chain's mask and keeps the direct logits as confidence (official 286)
    cams = torch.full((1, 1, 5, 5), 0.5)
    valid = torch.ones(1, 5, 5, dtype=torch.bool)
    lab = compose_cpm_labels(direct, cams, index, index, valid, 1, masks=chain)
    assert lab[0].tolist() == [[0, 1, 1, 1, 1]] * 5
    assert compose_cpm_labels(direct, cams, index, index, valid, 1)[0].tolist() == \
        [[0, 0, 1, 1, 1]] * 5


def test_cached_sam_output_chain_is_the_librarys_postprocess():
    """Cached embeddings: the chain runs in the original frame (segment-anything's
    Sam.postprocess_masks: cut the padding of the 1024-style input, resize) and the crop
    takes it by nearest sampling; with an identity crop it is the library's mask."""
    h0, w0, s = 30, 50, 64
    in_h, in_w = 38, 64                              # long side 64, padded to 64 x 64
    feats = ImageFeatures(embeddings=torch.zeros(1, 8, 4, 4),
                          input_sizes=torch.tensor([[in_h, in_w]]),
                          original_sizes=torch.tensor([[h0, w0]]), img_size=s)
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 16) * 4
    frames = CachedFrames([Geometry.identity(h0, w0)], feats, (h0, w0), ['x'])
    got = frames.masks_to_crop(logits, torch.zeros(2, dtype=torch.long))
    stub = SimpleNamespace(image_encoder=SimpleNamespace(img_size=s))
    want = Sam.postprocess_masks(stub, logits[:, None], (in_h, in_w), (h0, w0))[:, 0] > 0
    assert torch.equal(got, want) and 0.1 < want.float().mean() < 0.9
    # and it is not the same as thresholding the directly resampled logits
    direct = frames.logits_to_crop(logits, torch.zeros(2, dtype=torch.long)) > 0
    assert (direct != want).any()


def _batch(cfg, n=3):
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.pop('type')
    ds = VOC12ClsDataset(**ds_cfg)
    items = [ds[i] for i in range(n)]
    inputs = torch.stack([it['inputs'] for it in items])
    return inputs, [it['data_samples'] for it in items]


@pytest.mark.parametrize('source', ['cached', 'online'])
def test_make_targets_end_to_end(demo_caches, source):
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
    assert not any(k.startswith('cpm') for k in model.state_dict())
    assert isinstance(cpm.backend(), SamPromptBackend)
    assert (cpm.backend().image_encoder is not None) == (source == 'online')


def _cached_cpm(cfg, **overrides):
    cpm_cfg = cfg.model.cpm.copy()
    cpm_cfg.pop('type')
    cpm_cfg['embedding_source'] = 'cached'
    cpm_cfg.update(overrides)
    return CPM(**cpm_cfg)


def test_refine_runs_fp32_inside_autocast(demo_caches):
    """--amp: CPM's SAM part must not run (or crash) in half precision."""
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
        targets = cpm.make_targets(model, inputs, samples, labels)   # MS CAMs: cam_precision
    assert torch.equal(under_amp, reference)
    assert targets.dtype == torch.long and targets.shape == reference.shape
    assert model.training
    # cam_precision='fp32': the multi-scale CAMs ignore the autocast region
    fp32 = _cached_cpm(cfg, cam_precision='fp32')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        in_amp = fp32.make_targets(model, inputs, samples, labels)
    assert torch.equal(in_amp, fp32.make_targets(model, inputs, samples, labels))
    with pytest.raises(ValueError, match='cam_precision'):
        _cached_cpm(cfg, cam_precision='half')


def _padding_peak_case(cpm, samples, inputs=None):
    """One class; CAM 0.3 with 0.9 at (64, 64) and the global max 1.0 at (5, 5) in the padded
    top 20 rows. Returns the peaks CPM prompted and its targets."""
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
    targets = cpm.refine(cams, labels, samples, inputs)
    (peaks,), = seen
    return peaks, targets, cls


def test_peaks_in_the_crop_padding_are_not_prompted(demo_caches):
    cfg = demo_caches.copy()
    _, samples = _batch(cfg, n=1)
    peaks, targets, _ = _padding_peak_case(_cached_cpm(cfg), samples)
    assert peaks.tolist() == [[64, 64]]
    assert (targets[0, :20] == 255).all() and (targets[0, 20:] != 255).all()


def test_official_options_prompt_and_label_the_whole_crop(demo_caches):
    """ignore_padding=False (official): a global maximum in the padding is prompted and padded
    pixels get labels. The official peak rule thresholds the raw CAM at the plateau corner
    that peak_local_max returns: the lone 0.9 pixel at (64, 64) becomes the plateau
    (63..65, 63..65) whose corner (63, 63) has CAM 0.3 < tau, so only the global max remains."""
    cfg = demo_caches.copy()
    inputs, samples = _batch(cfg, n=1)
    cpm_cfg = cfg.model.cpm.copy()
    cpm_cfg.pop('type')
    cpm_cfg.update(embedding_source='online', peak_rule='official',
                   mask_chain='sam_postprocess', ignore_padding=False)
    peaks, targets, cls = _padding_peak_case(CPM(**cpm_cfg), samples, inputs)
    assert peaks.tolist() == [[5, 5]]
    assert (targets != 255).all() and set(targets.unique().tolist()) <= {cls, 4}
    with pytest.raises(ValueError, match='peak_rule'):
        CPM(**dict(cpm_cfg, peak_rule='plateau'))
    with pytest.raises(ValueError, match='mask_chain'):
        CPM(**dict(cpm_cfg, mask_chain='upsampled'))


@PROMPT_BACKENDS.register_module(name='reference_probe_for_tests', force=True)
class ReferenceProbe(SamPromptBackend):
    """Vanilla SAM that requires references and records what CPM gave it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.requires = frozenset({'reference'})
        self.seen = []

    def prepare(self, features):
        self.seen.append(features.references)
        return super().prepare(features)


def test_backend_requirements_are_wired(demo_caches):
    """A back-end requiring references gets each image's CAMs on the embedding grid."""
    cfg = demo_caches.copy()
    _, samples = _batch(cfg, n=2)
    cpm = _cached_cpm(cfg, backend=dict(type='reference_probe_for_tests', model_type='tiny',
                                        checkpoint=None))
    labels = torch.stack([s['gt_label'] for s in samples])
    cams = torch.zeros(2, 4, 128, 128)
    cls = [int(torch.nonzero(s['gt_label'])[0]) for s in samples]
    for i, c in enumerate(cls):
        cams[i, c, 40:90, 30:100] = 1.0
    cpm.refine(cams, labels, samples)
    (refs,) = cpm.backend().seen
    assert refs.shape == (2, 4, 16, 16)
    for i, c in enumerate(cls):
        assert refs[i, c].max() > 0.5 and refs[i].sum() == refs[i, c].sum()


def test_cpm_checks_its_setup_when_built(demo_caches, tmp_path):
    cfg = demo_caches.copy()
    with pytest.raises(ValueError, match="selection policy 'hq_official'"):
        _cached_cpm(cfg, selection='hq_official')
    with pytest.raises(ValueError, match='image encoder'):   # other weights than the cache's
        _cached_cpm(cfg, backend=dict(type='sam', model_type='tiny', checkpoint=None, seed=7))
    with pytest.raises(ValueError, match='input size'):
        _cached_cpm(cfg, backend=dict(type='sam', model_type='vit_b', checkpoint=None))
    with pytest.raises(FileNotFoundError, match='cache_sam_embeddings'):
        _cached_cpm(cfg, embedding_dir=str(tmp_path / 'none'))
    with pytest.raises(KeyError, match='registered'):
        _cached_cpm(cfg, backend=dict(type='no_such_backend'))
