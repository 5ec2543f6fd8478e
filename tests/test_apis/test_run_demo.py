"""`make demo`'s runner: rows in worker processes, SAM-dependent rows after the demo SAM."""
from __future__ import annotations

import os.path as osp

import pytest

CAM_DEMO = 'configs/demo/cam_resnet38d-w0.125_1xb8-12e_demo-128x128.py'
S2C_DEMO = 'configs/demo/s2c_resnet38d-w0.125_1xb8-12e_demo-128x128_demo-sam.py'
ONE_EPOCH = {'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
             'default_hooks.checkpoint.interval': 1, 'param_scheduler.0.end': 1}


@pytest.mark.slow
def test_run_demo_two_rows_at_once_and_sam_rows_wait(demo_root, tmp_path, capfd):
    from s2c.apis.demo import run_demo
    sam = str(tmp_path / 'demo_sam.pth')
    rows = {
        'cam': dict(config=CAM_DEMO, cfg_options=ONE_EPOCH, work_dir='cam'),
        # the demo-SAM config without CPM: its SE maps come from the demo SAM, so it waits
        'ssc': dict(config=S2C_DEMO, work_dir='ssc', cfg_options=dict(
            ONE_EPOCH, **{'model.cpm': None, 'sam.checkpoint': sam})),
        # a second row with the same caches: the two rows start together and must not
        # both take the cache's writer lock
        'ssc_b': dict(config=S2C_DEMO, work_dir='ssc_b', cfg_options=dict(
            ONE_EPOCH, **{'model.cpm': None, 'sam.checkpoint': sam})),
    }
    results = run_demo(rows, work_root=str(tmp_path / 'w'), data_root=demo_root,
                       demo_sam=sam, jobs=2, sam_settings=dict(steps=2, batch_size=2, seed=0))
    out = capfd.readouterr().out
    assert '2 at a time' in out
    # the SAM-free row is queued at once, the SAM row only after the demo SAM is trained
    # and both workers have built its caches
    assert out.index('queued: cam') < out.index('demo SAM trained') < \
        out.index('SAM caches of: ssc (4 shards)') < out.index('queued: ssc')
    ssc_log = open(osp.join(tmp_path, 'w', 'ssc', 'demo.log')).read()
    assert all(f'(shard {i}/4)' in ssc_log for i in range(1, 5))
    # a row whose caches an earlier row built adds no cache tasks...
    assert 'SAM caches of: ssc_b' not in out
    # ...and the rows do not check them again (two rows starting together would collide
    # on the cache's writer lock)
    for name in ('ssc', 'ssc_b'):
        log = open(osp.join(tmp_path, 'w', name, 'demo.log')).read().splitlines()
        assert all('(shard' in line for line in log if line.startswith('[demo] SE maps'))
    for name in ('cam', 'ssc', 'ssc_b'):
        assert 0.0 <= results[name] <= 100.0 and 0.0 <= results[f'{name} (train)'] <= 100.0
        log = osp.join(tmp_path, 'w', name, 'demo.log')
        # the row's training output went to its log, not to the console
        assert 'Epoch(train)' in open(log).read() and f'finished: {name}' in out
    assert 'Epoch(train)' not in out
    assert {'demo_sam', 'random_sam', 'baseline_all_background'} <= set(results)


def test_inference_threads_follow_the_pending_tasks(monkeypatch):
    """A row's CAM inference takes the cores of the tasks no longer pending; a thread count
    fixed by S2C_NUM_THREADS (or outside run_demo's workers) is left alone."""
    import multiprocessing

    import torch

    from s2c.apis import demo
    monkeypatch.setattr(demo, 'available_cores', lambda: 4)
    before = torch.get_num_threads()
    try:
        pending = multiprocessing.get_context('spawn').Value('i', 2)
        monkeypatch.setattr(demo, '_TASKS_PENDING', pending)
        monkeypatch.setattr(demo, '_FIXED_THREADS', False)
        demo._inference_threads()
        assert torch.get_num_threads() == 2
        pending.value = 1  # the last row: all four cores
        demo._inference_threads()
        assert torch.get_num_threads() == 4
        monkeypatch.setattr(demo, '_FIXED_THREADS', True)
        torch.set_num_threads(1)
        demo._inference_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(demo, '_TASKS_PENDING', None)
        monkeypatch.setattr(demo, '_FIXED_THREADS', False)
        demo._inference_threads()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
