"""Fault injection: each job is killed with SIGKILL at a random point (after a seeded number
of finished entries), then rerun. The rerun completes the output, `--verify` passes where the
tool has it, and no entry written before the kill is recomputed (its bytes and mtime are
unchanged)."""
from __future__ import annotations

import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from s2c.cam import write_gt_standin_cams
from s2c.datasets import read_split
from s2c.datasets.demo import make_demo_dataset

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
S2C_DEMO = osp.join(REPO, 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128.py')
CAM_DEMO = osp.join(REPO, 'configs/demo/cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py')
NUM_TRAIN = 24


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    make_demo_dataset(root, seed=1, num_train=NUM_TRAIN, num_val=4, size=(160, 160))
    return root


def _entries(folder: str, suffix: str) -> dict[str, tuple[int, bytes]]:
    out = {}
    for f in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        if f.endswith(suffix) and not f.startswith('.tmp-'):
            path = osp.join(folder, f)
            out[f] = (os.stat(path).st_mtime_ns, open(path, 'rb').read())
    return out


def _kill_after(cmd: list[str], folder: str, suffix: str, count: int,
                timeout_s: float = 300.0) -> dict:
    """Run ``cmd``; SIGKILL it once ``folder`` holds ``count`` finished entries."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.time()
    try:
        while proc.poll() is None and time.time() - start < timeout_s:
            if len(_entries(folder, suffix)) >= count:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, (
        f'the job ended before the kill ({proc.returncode}): {proc.stderr.read()[-2000:]}')
    return _entries(folder, suffix)


def _rerun(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def _check_resumed(before: dict, folder: str, suffix: str, names: list[str]) -> None:
    after = _entries(folder, suffix)
    assert sorted(after) == sorted(n + suffix for n in names)  # complete
    for f, stat in before.items():
        assert after[f] == stat, f'{f} was written before the kill and changed on the rerun'
    assert not [f for f in os.listdir(folder) if f.startswith('.tmp-')]


@pytest.mark.slow
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_se_map_cache_killed_then_rerun(data, tmp_path, seed):
    out = str(tmp_path / 'se')
    cmd = [sys.executable, 'tools/cache_se_maps.py', S2C_DEMO, '--data-root', data, '--out',
           out, '--no-progress', '--workers', '1']
    count = int(np.random.default_rng(seed).integers(1, NUM_TRAIN - 2))
    before = _kill_after(cmd, out, '.png', count)
    done = _rerun(cmd)
    assert done.returncode == 0, done.stderr[-2000:]
    names = read_split(osp.join(data, 'ImageSets/Segmentation/train.txt'))
    _check_resumed(before, out, '.png', names)
    verify = _rerun(cmd + ['--verify'])
    assert verify.returncode == 0, verify.stderr[-2000:]


@pytest.mark.slow
def test_embedding_cache_killed_then_rerun(data, tmp_path):
    out = str(tmp_path / 'emb')
    cmd = [sys.executable, 'tools/cache_sam_embeddings.py', S2C_DEMO, '--data-root', data,
           '--out', out, '--no-progress', '--workers', '1']
    before = _kill_after(cmd, out, '.npy', 5)
    done = _rerun(cmd)
    assert done.returncode == 0, done.stderr[-2000:]
    names = read_split(osp.join(data, 'ImageSets/Segmentation/train.txt'))
    _check_resumed(before, out, '.npy', names)
    assert _rerun(cmd + ['--verify']).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize('seed', [0, 1])
def test_pseudo_labels_killed_then_rerun(data, tmp_path, seed):
    names = read_split(osp.join(data, 'ImageSets/Segmentation/train.txt'))
    cams = str(tmp_path / 'cams')
    assert write_gt_standin_cams(osp.join(data, 'SegmentationClass'), names, cams,
                                 num_classes=4, progress=False).ok
    out = str(tmp_path / 'pl')
    cmd = [sys.executable, 'tools/make_pseudo_labels.py', CAM_DEMO, '--data-root', data,
           '--cams', cams, '--out', out, '--method', 'crf', '--split', 'train', '--workers',
           '1']
    count = int(np.random.default_rng(seed).integers(1, NUM_TRAIN - 2))
    before = _kill_after(cmd, out, '.png', count)
    done = _rerun(cmd)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_resumed(before, out, '.png', names)


@pytest.mark.slow
def test_training_killed_then_resumed(data, tmp_path):
    w = str(tmp_path / 'w')
    options = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
               'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
               'train_dataloader.batch_size=4', 'train_cfg.max_epochs=3',
               'train_cfg.val_interval=3', 'param_scheduler.0.end=3',
               'default_hooks.checkpoint.interval=1']
    cmd = [sys.executable, 'tools/train.py', CAM_DEMO, '--data-root', data, '--work-dir', w,
           '--cfg-options', *options]
    before = _kill_after(cmd, w, '.pth', 1)  # killed once the first checkpoint exists
    assert 'epoch_1.pth' in before
    done = _rerun(cmd[:3] + ['--resume'] + cmd[3:])
    assert done.returncode == 0, done.stderr[-3000:]
    after = _entries(w, '.pth')
    assert 'epoch_3.pth' in after and after['epoch_1.pth'] == before['epoch_1.pth']


@pytest.mark.slow
def test_cam_inference_killed_then_rerun(data, tmp_path):
    w = str(tmp_path / 'w')
    train = subprocess.run(
        [sys.executable, 'tools/train.py', CAM_DEMO, '--data-root', data, '--work-dir', w,
         '--cfg-options', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False', 'train_dataloader.batch_size=4',
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'param_scheduler.0.end=1'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    out = str(tmp_path / 'cams')
    cmd = [sys.executable, 'tools/test.py', CAM_DEMO, osp.join(w, 'epoch_1.pth'), '--data-root',
           data, '--split', 'train', '--out', out]
    before = _kill_after(cmd, out, '.npz', 4)
    done = _rerun(cmd)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_resumed(before, out, '.npz', read_split(osp.join(data, 'ImageSets/Segmentation/'
                                                            'train.txt')))
