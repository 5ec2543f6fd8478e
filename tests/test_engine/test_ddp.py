"""DDP that has actually run: torchrun with 2 CPU processes (gloo) trains the demo S2C config
with CPM active, ranks stay in step, checkpoints are written once, --resume works; the SE-map
cache made by 2 ranks equals the one-process cache."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest

from s2c.apis import build_train_config
from s2c.caches import run_embedding_job, run_se_map_job

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')


def _torchrun(args: list[str], port: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=osp.dirname(osp.abspath(__file__)) + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(port)] + args
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_two_process_s2c_training_with_cpm_and_resume(demo_root, tmp_path):
    caches = {'train_dataloader.dataset.se_map_dir': str(tmp_path / 'se'),
              'model.cpm.embedding_dir': str(tmp_path / 'emb')}
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path / 'c'), data_root=demo_root,
                             cfg_options=caches)
    assert run_se_map_job(cfg, progress=False, num_workers=0).ok
    assert run_embedding_job(cfg, progress=False, num_workers=0).ok
    w = tmp_path / 'w'
    options = [f'{k}={v}' for k, v in caches.items()] + [
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_dataloader.batch_size=2', 'model.cpm.start_epoch=0', 'param_scheduler.0.end=2',
        'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
    ]
    config = tmp_path / 's2c_demo_probe.py'  # the demo S2C config + a per-rank checksum hook
    config.write_text(f"_base_ = [{S2C_DEMO!r}]\n"
                      "custom_imports = dict(imports=['s2c.datasets', 's2c.models', "
                      "'s2c.evaluation', 's2c.engine', 'ddp_probe'], allow_failed_imports=False)\n"
                      "default_hooks = dict(param_checksum=dict(type='ParamChecksumHook'))\n")
    base = ['tools/train.py', str(config), '--launcher', 'pytorch', '--data-root', demo_root,
            '--work-dir', str(w), '--cfg-options', *options]
    first = _torchrun(base + ['train_cfg.max_epochs=1'], 29621)
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'loss_cpm' in first.stdout + first.stderr  # CPM ran
    sums = [open(w / f'params_rank{r}.txt').read() for r in (0, 1)]
    assert sums[0] == sums[1]  # ranks in step
    assert sorted(f for f in os.listdir(w) if f.startswith('epoch_')) == ['epoch_1.pth']
    assert not [f for f in os.listdir(w) if f.startswith('.tmp-')]
    second = _torchrun(base[:2] + ['--resume'] + base[2:] + ['train_cfg.max_epochs=2'], 29622)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'resumed' in (second.stdout + second.stderr).lower()
    assert {'epoch_1.pth', 'epoch_2.pth'} <= set(os.listdir(w))
    assert open(w / 'params_rank0.txt').read() == open(w / 'params_rank1.txt').read()


@pytest.mark.slow
def test_two_rank_se_cache_equals_one_process(demo_root, tmp_path):
    one = str(tmp_path / 'one')
    cfg = build_train_config(S2C_DEMO, work_dir=str(tmp_path / 'c'), data_root=demo_root)
    assert run_se_map_job(cfg, out=one, progress=False, num_workers=0).ok
    two = str(tmp_path / 'two')
    done = _torchrun(['tools/cache_se_maps.py', S2C_DEMO, '--data-root', demo_root, '--out', two,
                      '--no-progress'], 29623)
    assert done.returncode == 0, done.stderr[-3000:]
    pngs = sorted(f for f in os.listdir(one) if f.endswith('.png'))
    assert pngs and pngs == sorted(f for f in os.listdir(two) if f.endswith('.png'))
    for f in pngs:
        assert open(osp.join(one, f), 'rb').read() == open(osp.join(two, f), 'rb').read()
