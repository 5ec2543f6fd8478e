"""Fixtures shared by the model tests."""
from __future__ import annotations

import os.path as osp

import pytest
from mmengine.config import Config

from s2c.apis import set_data_root
from s2c.caches import run_embedding_job, run_se_map_job

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


@pytest.fixture(scope='module')
def demo_caches(demo_root, tmp_path_factory):
    """The S2C demo config on the test data, with its Felzenszwalb SE maps and tiny-SAM
    embeddings of the training split built in a temporary folder."""
    cfg = Config.fromfile(S2C_DEMO)
    set_data_root(cfg, demo_root)
    out = tmp_path_factory.mktemp('caches')
    cfg.train_dataloader.dataset.se_map_dir = str(out / 'se')
    cfg.model.cpm.embedding_dir = str(out / 'emb')
    assert run_se_map_job(cfg, progress=False, num_workers=0).ok
    assert run_embedding_job(cfg, progress=False, num_workers=0).ok
    return cfg
