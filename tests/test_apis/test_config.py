"""Loading configs: --data-root moves the dataset and every path derived from it."""
from __future__ import annotations

import os.path as osp

import pytest

from s2c.apis import build_train_config, load_config, set_data_root
from s2c.caches import embedding_dir, se_map_dir

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_VOC = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py')
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


def test_cache_folders_are_written_in_the_config():
    cfg = load_config(S2C_VOC)
    assert se_map_dir(cfg) == 'data/VOCdevkit/VOC2012/se_maps/sam_amg-vit_h-smallest_on_top'
    assert embedding_dir(cfg) == 'data/VOCdevkit/VOC2012/sam_embeddings/vit_h'
    assert cfg.model.cpm.backend == dict(type='sam', model_type='vit_h',
                                         checkpoint='checkpoints/sam_vit_h_4b8939.pth')


def test_data_root_moves_the_caches_with_it():
    cfg = load_config(S2C_VOC, data_root='/data/voc/')
    assert embedding_dir(cfg) == '/data/voc/sam_embeddings/vit_h'
    assert se_map_dir(cfg) == '/data/voc/se_maps/sam_amg-vit_h-smallest_on_top'
    assert cfg.val_dataloader.dataset.data_root == '/data/voc/'
    assert cfg.model.backbone.pretrained == 'checkpoints/resnet38d_ilsvrc_cls1000.pth'  # kept
    cfg = load_config(S2C_DEMO)
    cfg.data_root = 'data/demo/'                       # a trailing slash keeps its separator
    set_data_root(cfg, '/new')
    assert embedding_dir(cfg) == '/new/sam_embeddings/tiny'
    # a root set only on the datasets (e.g. by --cfg-options) is followed too
    cfg = load_config(S2C_DEMO, cfg_options={'data_root': None})
    set_data_root(cfg, 'data/demo2')
    assert embedding_dir(cfg) == 'data/demo2/sam_embeddings/tiny'


def test_official_preset_selects_every_official_behaviour():
    cfg = load_config(S2C_VOC.replace('.py', '_official.py'))
    cpm = cfg.model.cpm
    assert (cpm.embedding_source, cpm.peak_rule, cpm.mask_chain, cpm.ignore_padding,
            cpm.selection, cpm.confidence) == ('online', 'official', 'sam_postprocess', False,
                                               'index2', 'logit_x_meancam')
    assert cfg.model.ssc.negatives == 'official'
    assert cfg.se_maps.overlap == 'first_on_top' and cfg.se_maps.provider.fast_decoder is False
    assert se_map_dir(cfg) == 'data/VOCdevkit/VOC2012/se_maps/sam_amg-vit_h-first_on_top'
    steps = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert steps.index('RenumberSegmentsBeforeCrop') == steps.index('RandomCrop') - 1
    assert cfg.train_dataloader.dataset.pipeline[steps.index('RenumberSegmentsBeforeCrop')] == \
        dict(type='RenumberSegmentsBeforeCrop', uint8_ids=True)
    assert cfg.train_dataloader.dataset.pipeline[steps.index('RandomRescaleLongSide')][
        'map_resize'] == 'pil'
    assert cfg.optim_wrapper.optimizer.momentum == 0.0005


@pytest.mark.parametrize('suffix,backend', [
    ('', 'sam'), ('_hq-sam', 'hq_sam'), ('_robust-sam', 'robust_sam'),
    ('_robust-sam-clear', 'robust_sam_clear'), ('_persam', 'persam'), ('_persam-f', 'persam_f')])
def test_one_s2c_config_per_backend(suffix, backend):
    """Each back-end's S2C config selects it with a policy it serves and, for the back-ends
    that need the early ViT block, an embedding cache that has it."""
    from s2c.registry import PROMPT_BACKENDS
    from s2c.sam.backends import check_policy
    cfg = load_config(S2C_VOC.replace('.py', f'{suffix}.py'))
    cpm = cfg.model.cpm
    assert cpm.backend.type == backend
    built = PROMPT_BACKENDS.build(dict(cpm.backend, model_type='tiny', checkpoint=None,
                                       device='cpu'))
    check_policy(cpm.selection, built.output_names)
    assert bool(cfg.sam_embeddings.early_features) == ('early' in built.requires)
    if backend.startswith('robust'):   # RobustSAM's own encoder makes its embeddings
        assert cfg.sam.variant == 'robust_sam' and cfg.sam.checkpoint == cpm.backend.checkpoint


def test_missing_config_and_resume_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(tmp_path / 'nope.py'))
    with pytest.raises(FileNotFoundError, match='resume'):
        build_train_config(S2C_DEMO, resume=str(tmp_path / 'x.pth'))
