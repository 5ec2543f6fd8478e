"""`--method sam`: CPM at inference maps peaks and masks correctly (oracle back-end)."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from s2c.apis import set_data_root
from s2c.caches import run_embedding_job
from s2c.cam import load_cams, save_cams
from s2c.datasets import read_split
from s2c.evaluation import confusion_matrix, scores_from_confusion
from s2c.pseudo_labels import LabelInputs, SamRefineLabels, make_pseudo_labels
from s2c.registry import PROMPT_BACKENDS
from s2c.sam.backends import SAM_OUTPUT_NAMES, PromptBackend
from s2c.sam.build import encoder_id
from s2c.structures import MaskPrediction
from s2c.utils import load_label_png

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GT: dict = {}


@PROMPT_BACKENDS.register_module(name='oracle_for_tests', force=True)
class OracleBackend(PromptBackend):
    """Returns, for each prompt, +8/-8 logits of the GT mask of the class under its first point.

    It also checks that every positive point lies on a pixel of the prompted class. It decodes
    on the tiny random SAM's embeddings (its encoder_id), with SAM's four output names.
    """

    def __init__(self, device='cpu'):
        super().__init__()
        self.output_names = SAM_OUTPUT_NAMES
        self.img_size = 256
        self.encoder_id = encoder_id('tiny', None, seed=0)
        self.bad_points = 0

    def decode(self, prepared, prompts):
        features = prepared.features
        n = len(prompts)
        s = features.img_size
        side = s // 4
        out = torch.full((n, 4, side, side), -8.0)
        gt = GT['current']
        h0, w0 = gt.shape
        in_h, in_w = features.input_sizes[0].tolist()
        for i in range(n):
            cls = int(prompts.class_index[i]) + 1
            pts = prompts.points[i][prompts.labels[i] == 1].numpy()
            x = np.clip(((pts[:, 0] + 0.5) * w0 / in_w).astype(int), 0, w0 - 1)
            y = np.clip(((pts[:, 1] + 0.5) * h0 / in_h).astype(int), 0, h0 - 1)
            self.bad_points += int((gt[y, x] != cls).sum())
            yc = ((np.arange(side) + 0.5) * 4 * h0 / in_h).astype(int)
            xc = ((np.arange(side) + 0.5) * 4 * w0 / in_w).astype(int)
            inside = (yc[:, None] < h0) & (xc[None, :] < w0)
            m = gt[np.minimum(yc, h0 - 1)[:, None], np.minimum(xc, w0 - 1)[None]] == cls
            out[i, 3] = torch.from_numpy(np.where(inside & m, 8.0, -8.0))
        return MaskPrediction(logits=out, iou=torch.zeros(n, 4), names=SAM_OUTPUT_NAMES)


@pytest.fixture(scope='module')
def tiny_embeddings(voc_samples_root, tmp_path_factory):
    """Tiny-SAM embeddings (with the early ViT block, for HQ-SAM) of the VOC val samples."""
    cfg = Config.fromfile(osp.join(REPO, 'configs/demo',
                                   's2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py'))
    set_data_root(cfg, voc_samples_root)
    cfg.sam_embeddings = dict(early_features=True)
    out = str(tmp_path_factory.mktemp('emb'))
    names = read_split(osp.join(voc_samples_root, 'ImageSets/Segmentation/val.txt'))
    assert run_embedding_job(cfg, out=out, names=names, progress=False, num_workers=0).ok
    return out, names


def test_sam_refinement_reproduces_oracle_masks(voc_samples_root, tiny_embeddings, tmp_path):
    emb_dir, names = tiny_embeddings
    cpm = dict(backend=dict(type='oracle_for_tests'), embedding_dir=emb_dir,
               peak_threshold=0.5, min_distance=20, selection='index2',
               confidence='logit_x_meancam')
    method = SamRefineLabels(cpm=cpm, device='cpu')
    backend = method.cpm.backend()
    cm = np.zeros((21, 21), np.int64)
    for name in names:
        gt = load_label_png(osp.join(voc_samples_root, 'SegmentationClass', name + '.png'))
        GT['current'] = gt
        keys = np.array(sorted(set(np.unique(gt).tolist()) - {0, 255})) - 1
        # CAMs: the GT region of each class, smoothed, peaking inside the object
        from scipy import ndimage as ndi
        cams = np.stack([ndi.gaussian_filter((gt == k + 1).astype(np.float32), 8)
                         for k in keys])
        cams /= cams.reshape(len(keys), -1).max(1)[:, None, None]
        label, score = method(LabelInputs(name, keys, cams))
        assert label.shape == gt.shape and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, *(keys + 1)}
        cm += confusion_matrix(label, gt, 21)
    assert backend.bad_points == 0
    assert scores_from_confusion(cm)['miou'] > 0.9  # limited only by the 4 px low-res grid


def test_sam_method_through_the_job(voc_samples_root, tiny_embeddings, tmp_path):
    emb_dir, names = tiny_embeddings
    cam_dir = tmp_path / 'cams'
    rng = np.random.default_rng(0)
    for name in names:
        gt = load_label_png(osp.join(voc_samples_root, 'SegmentationClass', name + '.png'))
        keys = np.array(sorted(set(np.unique(gt).tolist()) - {0, 255})) - 1
        cams = rng.random((len(keys), *gt.shape)).astype(np.float32) * 0.3
        for i, k in enumerate(keys):
            cams[i][gt == k + 1] += 0.7
        save_cams(str(cam_dir / f'{name}.npz'), keys, cams)
    assert load_cams(str(cam_dir / f'{names[0]}.npz'))[1].max() <= 1.0
    for backend, selection in (('sam', 'index2'), ('hq_sam', 'hq_official'),
                               ('robust_sam', 'robust'), ('robust_sam_clear', 'index2'),
                               ('persam', 'persam'), ('persam_f', 'persam_f')):
        cpm = dict(backend=dict(type=backend, model_type='tiny', checkpoint=None),
                   embedding_dir=emb_dir, selection=selection)
        out = tmp_path / f'pl_{backend}'
        summary = make_pseudo_labels(str(cam_dir), str(out), names, 'sam', cpm=cpm,
                                     device='cpu', progress=False)
        assert summary.ok, summary.format()
        assert len(summary.done) == len(names)
        label = load_label_png(str(out / f'{names[0]}.png'))
        gt = load_label_png(osp.join(voc_samples_root, 'SegmentationClass', names[0] + '.png'))
        assert label.shape == (513, 513)
        # only the image's classes (and background / ignore) appear
        assert set(np.unique(label).tolist()) <= set(np.unique(gt).tolist()) | {0, 255}


def test_sam_method_is_checked_before_the_first_image(tiny_embeddings, tmp_path):
    """A back-end that does not fit the cache, or an unservable policy, stops the job before
    anything is written."""
    emb_dir, names = tiny_embeddings
    out = tmp_path / 'pl'
    other = dict(backend=dict(type='sam', model_type='tiny', checkpoint=None, seed=7),
                 embedding_dir=emb_dir)
    with pytest.raises(ValueError, match='image encoder'):
        make_pseudo_labels(str(tmp_path), str(out), names, 'sam', cpm=other, device='cpu')
    policy = dict(backend=dict(type='sam', model_type='tiny', checkpoint=None),
                  embedding_dir=emb_dir, selection='hq_only')
    with pytest.raises(ValueError, match="selection policy 'hq_only'"):
        make_pseudo_labels(str(tmp_path), str(out), names, 'sam', cpm=policy, device='cpu')
    assert not out.exists()
