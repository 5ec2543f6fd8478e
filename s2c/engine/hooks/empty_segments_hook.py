"""Warn when SSC has had no segment to learn from during a whole logging window."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.logging import print_log

from s2c.registry import HOOKS


@HOOKS.register_module()
class EmptySegmentsHook(Hook):
    """Watch ``ssc_coverage`` (the share of crop pixels inside an SE segment, logged by the
    classifier with SSC) and warn when it stayed 0 for ``interval`` iterations in a row:
    ``loss_ssc`` is then 0 and SSC teaches nothing (empty SE maps from a weak SAM or too strict
    thresholds, or the wrong cache). Inactive for models without SSC.

    Args:
        interval: Iterations per window (default: the logger's interval, 50).
    """

    priority = 'LOW'

    def __init__(self, interval: int = 50) -> None:
        self.interval = int(interval)
        self._empty_since: int | None = None
        self.warnings = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not isinstance(outputs, dict) or 'ssc_coverage' not in outputs:
            return
        if float(outputs['ssc_coverage']) > 0:
            self._empty_since = None
            return
        if self._empty_since is None:
            self._empty_since = runner.iter
        if runner.iter + 1 - self._empty_since == self.interval:
            self.warnings += 1
            print_log(f'SSC had no SE segment in iterations {self._empty_since + 1}-'
                      f'{runner.iter + 1}: loss_ssc is 0 and teaches nothing. Check the SE-map '
                      'cache (tools/cache_se_maps.py prints its share of empty maps): a weak '
                      'SAM or strict thresholds give empty maps', logger='current', level=30)
            self._empty_since = None
