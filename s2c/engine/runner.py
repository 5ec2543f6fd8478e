"""MMEngine's Runner with crash-safe checkpoints: atomic saves, and an auto-resume that
skips a checkpoint a crash left unreadable."""
from __future__ import annotations

import contextlib
import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from s2c.registry import RUNNERS
from s2c.utils.checkpoint import load_torch_file
from s2c.utils.fileio import TMP_PREFIX


def readable_checkpoint(path: str) -> str | None:
    """``None`` when ``path`` loads with ``torch.load(weights_only=True)``, else why not."""
    if not osp.isfile(path):
        return 'file not found'
    try:
        load_torch_file(path, 'checkpoint')
    except Exception as e:  # noqa: BLE001 - any failure makes it unusable for resuming
        return f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
    return None


def newest_readable_checkpoint(work_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The checkpoint to resume from: ``last_checkpoint``'s file when readable, else the
    newest readable ``*.pth`` of ``work_dir``.

    Returns:
        tuple: ``(path or None, [(skipped path, reason), ...])``.
    """
    skipped = []
    candidates = []
    pointed = find_latest_checkpoint(work_dir)
    if pointed:
        candidates.append(pointed)
    others = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime, reverse=True)
    candidates += [p for p in others if osp.abspath(p) != osp.abspath(pointed or '')]
    for path in candidates:
        reason = readable_checkpoint(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


@RUNNERS.register_module()
class CheckpointSafeRunner(Runner):
    """:class:`mmengine.runner.Runner` whose checkpoints survive a crash.

    - Every checkpoint (periodic, last, best) is written to a temporary name in the same
      folder and renamed when complete: a kill or a full disk during ``torch.save`` never
      leaves a truncated file under a checkpoint's name.
    - ``resume=True`` without a path resumes from ``last_checkpoint``'s file when it loads,
      else from the newest readable ``*.pth`` of the work dir, saying which files were
      skipped and why (a truncated file from an older run, a broken pointer).
    """

    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        """As :meth:`Runner.save_checkpoint`, written atomically (temp name + rename)."""
        tmp_name = f'{TMP_PREFIX}{filename}'
        try:
            super().save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            if is_main_process():  # only the main process writes checkpoints (DDP)
                os.replace(osp.join(out_dir, tmp_name), osp.join(out_dir, filename))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(osp.join(out_dir, tmp_name))
            raise

    def load_or_resume(self) -> None:
        """Auto-resume from the newest readable checkpoint (class docstring)."""
        if self._has_loaded or not (self._resume and self._load_from is None):
            return super().load_or_resume()
        path, skipped = newest_readable_checkpoint(self.work_dir)
        for bad, reason in skipped:
            print_log(f'resume: skipped {bad} ({reason})', logger='current', level=30)
        if path is None:
            print_log(f'resume: no readable checkpoint in {self.work_dir}; starting from '
                      'scratch', logger='current', level=30)
            self._has_loaded = True
            return None
        if skipped:
            print_log(f'resume: from {path} instead', logger='current', level=30)
        self._load_from = path
        return super().load_or_resume()
