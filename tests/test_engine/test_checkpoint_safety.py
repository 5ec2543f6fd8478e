"""Checkpoints are written atomically, and --resume skips a checkpoint a crash left broken."""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import shutil
import sys

import mmengine.runner.runner as mm_runner
import pytest

from s2c.apis import train
from s2c.engine.runner import newest_readable_checkpoint, readable_checkpoint

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'test_apis'))
from test_train import ITERS_PER_EPOCH, _cfg  # noqa: E402


def _sha(path) -> str:
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


@pytest.mark.slow
def test_failed_save_leaves_the_old_checkpoint_and_resume_skips_a_broken_one(
        demo_root, tmp_path, monkeypatch):
    w = tmp_path / 'w'
    runner = train(_cfg(demo_root, w, max_epochs=1))
    good = w / 'epoch_1.pth'
    digest = _sha(good)

    def dying_save(checkpoint, filename, **kwargs):  # a kill / full disk mid-write
        with open(filename, 'wb') as f:
            f.write(b'PK\x03\x04 half a checkpoint')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(mm_runner, 'save_checkpoint', dying_save)
    with pytest.raises(OSError, match='No space left'):
        runner.save_checkpoint(str(w), 'epoch_1.pth')
    monkeypatch.undo()
    assert _sha(good) == digest  # the old file under that name is intact
    assert not [f for f in os.listdir(w) if f.startswith('.tmp-')]  # no partial file left

    # A truncated newer checkpoint that last_checkpoint points to (an older, non-atomic crash).
    broken = w / 'epoch_2.pth'
    shutil.copy(good, broken)
    with open(broken, 'r+b') as f:
        f.truncate(os.path.getsize(broken) // 2)
    (w / 'last_checkpoint').write_text(str(broken))
    assert readable_checkpoint(str(broken)) is not None and readable_checkpoint(str(good)) is None
    path, skipped = newest_readable_checkpoint(str(w))
    assert path == str(good) and [s[0] for s in skipped] == [str(broken)]

    resumed = train(_cfg(demo_root, w, max_epochs=2, extra={'resume': True}))
    assert resumed._load_from == str(good)
    assert resumed.iter == 2 * ITERS_PER_EPOCH  # continued from epoch 1, not from scratch
    assert readable_checkpoint(str(w / 'epoch_2.pth')) is None  # rewritten whole
