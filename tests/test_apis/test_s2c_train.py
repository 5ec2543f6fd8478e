"""The S2C objective end to end: demo config (10 iterations) and the real VOC samples."""
import os.path as osp
import shutil

import numpy as np
import pytest

from s2c.apis import build_train_config, train
from s2c.caches import CacheMismatchError, MissingCacheError, run_embedding_job, run_se_map_job

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')
S2C_VOC = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256.py')
S2C_OFFICIAL = osp.join(REPO, 'configs/s2c/s2c_resnet38d_1xb8-40e_voc12aug-256x256_official.py')
FAST = {'train_dataloader.batch_size': 3, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False, 'default_hooks.logger.interval': 1,
        'model.backbone.width': 0.0625, 'model.feat_dim': 16}


def _cache_dirs(tmp_path) -> dict:
    """--cfg-options that put both SAM caches under ``tmp_path``."""
    return {'train_dataloader.dataset.se_map_dir': str(tmp_path / 'se'),
            'model.cpm.embedding_dir': str(tmp_path / 'emb')}


def _build_caches(cfg, **kw):
    assert run_se_map_job(cfg, progress=False, num_workers=0, **kw).ok
    assert run_embedding_job(cfg, progress=False, num_workers=0, **kw).ok


def test_missing_cache_stops_before_training_with_command(demo_root, tmp_path):
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path),
                             data_root=demo_root,
                             cfg_options={'train_dataloader.dataset.se_map_dir':
                                          str(tmp_path / 'none')})
    with pytest.raises(MissingCacheError, match=r'python tools/cache_se_maps.py .*s2c_resnet38d'
                                                r'.*demo-128x128.py --data-root'):
        train(cfg, cache_cli_args=f'--data-root {demo_root}')


def test_incomplete_cache_stops_before_training(demo_root, tmp_path):
    """A sharded/killed cache job must not surface as a KeyError epochs later."""
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path),
                             data_root=demo_root,
                             cfg_options=_cache_dirs(tmp_path))
    assert run_se_map_job(cfg, progress=False, num_workers=0).ok
    assert run_embedding_job(cfg, shard=(0, 2), progress=False, num_workers=0).ok
    with pytest.raises(MissingCacheError, match=r'(?s)SAM embeddings .* incomplete: 8 of 16 '
                                                r'.*python tools/cache_sam_embeddings.py'):
        train(cfg)


def _two_epoch_s2c_demo(demo_root, tmp_path, cpm_start_epoch: int):
    """s2c_demo for 2 x 5 iterations with its caches built under ``tmp_path``."""
    options = dict(FAST, **{'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 2,
                            'param_scheduler.0.end': 2, 'model.cpm.start_epoch': cpm_start_epoch,
                            **_cache_dirs(tmp_path)})
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path),
                             data_root=demo_root, cfg_options=options)
    _build_caches(cfg)
    return cfg


@pytest.mark.slow
def test_ten_iterations_with_all_three_losses(demo_root, tmp_path):
    cfg = _two_epoch_s2c_demo(demo_root, tmp_path, cpm_start_epoch=0)
    runner = train(cfg)
    assert runner.iter == 10
    for key in ('loss_cls', 'loss_ssc', 'loss_cpm'):
        history = runner.message_hub.get_scalar(f'train/{key}').data[0]
        assert len(history) == 10, key
        assert np.isfinite(history).all() and (history > 0).all(), (key, history)
    assert 0 <= runner.message_hub.get_scalar('val/cam/mIoU').current() <= 100


#: Every registered prompt back-end and the selection policy CPM uses with it.
BACKEND_POLICIES = {'sam': 'index2', 'hq_sam': 'hq_official', 'robust_sam': 'robust',
                    'robust_sam_clear': 'index2', 'persam': 'persam', 'persam_f': 'persam_f'}


def test_every_registered_backend_is_trained_below():
    from s2c.registry import PROMPT_BACKENDS
    PROMPT_BACKENDS.import_from_location()
    ours = {name for name, cls in PROMPT_BACKENDS.module_dict.items()
            if cls.__module__.startswith('s2c.')}
    assert ours == set(BACKEND_POLICIES)


@pytest.mark.slow
@pytest.mark.parametrize('backend', sorted(BACKEND_POLICIES))
def test_five_cpm_iterations_with_each_backend(demo_root, tmp_path, backend):
    """Each back-end (tiny, random) behind CPM for 5 iterations; the embedding cache carries
    the early ViT block so that HQ-SAM finds it."""
    options = dict(FAST, **{'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
                            'param_scheduler.0.end': 1, 'model.cpm.start_epoch': 0,
                            'model.cpm.backend.type': backend,
                            'model.cpm.selection': BACKEND_POLICIES[backend],
                            'sam_embeddings.early_features': True, **_cache_dirs(tmp_path)})
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path), data_root=demo_root,
                             cfg_options=options)
    _build_caches(cfg)
    runner = train(cfg)
    history = runner.message_hub.get_scalar('train/loss_cpm').data[0]
    assert len(history) == 5 and np.isfinite(history).all() and (history > 0).all()


@pytest.mark.slow
def test_cpm_waits_for_its_start_epoch(demo_root, tmp_path):
    cfg = _two_epoch_s2c_demo(demo_root, tmp_path, cpm_start_epoch=1)
    runner = train(cfg)
    history = runner.message_hub.get_scalar('train/loss_cpm').data[0]
    assert len(history) == 5  # logged only once CPM is on (epoch 1: iterations 6-10)


def _voc_samples_options(voc_samples_labels, tmp_path) -> dict:
    """1 epoch on the 10 train samples with tiny random SAMs and small AMG grids."""
    return dict(FAST, **{
        'train_dataloader.dataset.ann_file': 'ImageSets/Segmentation/train.txt',
        'train_dataloader.dataset.cls_labels': voc_samples_labels,
        'val_dataloader.dataset.ann_file': 'ImageSets/Segmentation/val.txt',
        'val_dataloader.dataset.cls_labels': voc_samples_labels,
        'model.backbone.pretrained': None, 'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 1, 'param_scheduler.0.end': 1, 'model.cpm.start_epoch': 0,
        'sam.model_type': 'tiny', 'sam.checkpoint': None, 'sam.device': 'cpu',
        'se_maps.provider.points_per_side': 4, 'se_maps.provider.pred_iou_thresh': 0.0,
        'se_maps.provider.stability_score_thresh': 0.0, 'se_maps.provider.box_nms_thresh': 1.0,
        'model.cpm.backend.model_type': 'tiny', 'model.cpm.backend.checkpoint': None,
        **_cache_dirs(tmp_path)})


def _assert_three_losses(runner):
    assert runner.iter == 3  # 10 images, batch 3, drop_last
    for key in ('loss_cls', 'loss_ssc', 'loss_cpm'):  # the random masks make > 1 segment
        history = runner.message_hub.get_scalar(f'train/{key}').data[0]
        assert np.isfinite(history).all() and (history > 0).all(), (key, history)


@pytest.mark.slow
def test_s2c_voc_on_real_samples_with_tiny_sam(voc_samples_root, voc_samples_labels, tmp_path):
    cfg = build_train_config(S2C_VOC, work_dir=str(tmp_path / 'w'), data_root=voc_samples_root,
                             cfg_options=_voc_samples_options(voc_samples_labels, tmp_path))
    # the decoder's SAM is set explicitly: nothing is copied from the cache's `sam` block
    assert cfg.model.cpm.backend == dict(type='sam', model_type='tiny', checkpoint=None)
    plain = build_train_config(S2C_VOC, cfg_options={'sam.model_type': 'tiny'})
    assert plain.model.cpm.backend.model_type == 'vit_h'
    _build_caches(cfg, split='train')
    _assert_three_losses(train(cfg))


@pytest.mark.slow
def test_official_preset_on_real_samples(voc_samples_root, voc_samples_labels, tmp_path):
    """The official preset: SE maps in the official numbering (exact decoder), no embedding
    cache (SAM encodes each crop), official peaks / mask chain / padding / SSC negatives."""
    options = _voc_samples_options(voc_samples_labels, tmp_path)
    options.pop('model.cpm.embedding_dir')
    cfg = build_train_config(S2C_OFFICIAL, work_dir=str(tmp_path / 'w'),
                             data_root=voc_samples_root, cfg_options=options)
    assert cfg.model.cpm.embedding_source == 'online' and cfg.model.cpm.embedding_dir is None
    assert cfg.se_maps.overlap == 'first_on_top' and not cfg.se_maps.provider.fast_decoder
    assert run_se_map_job(cfg, split='train', progress=False, num_workers=0).ok
    _assert_three_losses(train(cfg))


@pytest.mark.slow
def test_official_ssc_negatives_with_official_numbering(demo_root, tmp_path):
    from mmengine.config import Config
    pipeline = Config.fromfile(S2C_DEMO).train_pipeline
    crop = [t['type'] for t in pipeline].index('RandomCrop')
    pipeline.insert(crop, dict(type='RenumberSegmentsBeforeCrop'))
    options = dict(FAST, **{'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
                            'param_scheduler.0.end': 1, 'model.cpm': None,
                            'model.ssc.negatives': 'official',
                            'train_dataloader.dataset.pipeline': pipeline,
                            'train_dataloader.dataset.se_map_dir': str(tmp_path / 'se')})
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path),
                             data_root=demo_root, cfg_options=options)
    assert run_se_map_job(cfg, progress=False, num_workers=0).ok
    runner = train(cfg)
    history = runner.message_hub.get_scalar('train/loss_ssc').data[0]
    assert len(history) == 5 and np.isfinite(history).all() and (history > 0).all()


def test_missing_cache_command_quotes_a_config_path_with_spaces(demo_root, tmp_path):
    shutil.copytree(osp.join(REPO, 'configs'), tmp_path / 'my configs' / 'configs')
    shutil.copy(S2C_DEMO, tmp_path / 'my configs' / 'configs' / 'demo' / 'x.py')
    cfg = build_train_config(str(tmp_path / 'my configs' / 'configs' / 'demo' / 'x.py'),
                             work_dir=str(tmp_path / 'w'), data_root=demo_root,
                             cfg_options={'train_dataloader.dataset.se_map_dir':
                                          str(tmp_path / 'none')})
    with pytest.raises(MissingCacheError, match=r"python tools/cache_se_maps.py '.*/my configs/"
                                                r"configs/demo/x\.py'"):
        train(cfg)


def test_se_cache_made_with_other_settings_is_refused(demo_root, tmp_path):
    """Pointed at SLIC SE maps while the config says Felzenszwalb, training stops before
    iteration 1 with the difference and the rebuild command."""
    options = _cache_dirs(tmp_path)
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path / 'w'), data_root=demo_root,
                             cfg_options=options)
    assert run_se_map_job(cfg, provider='slic', progress=False, num_workers=0).ok
    with pytest.raises(CacheMismatchError, match=r"(?s)provider 'slic' \(config: 'felzenszwalb'\)"
                                                 r".*cache_se_maps.py .* --overwrite"):
        train(cfg)
