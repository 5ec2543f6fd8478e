"""Peak resident memory of a block of code, for the benchmark scripts."""
from __future__ import annotations

import gc
import threading

import psutil


class PeakRSS:
    """Context manager: highest resident set size (bytes) seen while the block runs.

    A daemon thread samples ``psutil.Process().memory_info().rss`` every ``interval``
    seconds (plus once at entry and once at exit), so a spike shorter than the
    interval can be missed.

    Args:
        interval: Sampling period in seconds.
        include_children: Add the RSS of child processes (e.g. worker pools).

    Attributes:
        base: RSS at entry, bytes (after a ``gc.collect()``).
        peak: Highest RSS sampled, bytes; may be reset by the caller inside the
            block (e.g. to ignore a warm-up).
    """

    def __init__(self, interval: float = 0.01, *, include_children: bool = False) -> None:
        self.interval = interval
        self.include_children = include_children
        self.proc = psutil.Process()
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rss(self) -> int:
        """Current RSS in bytes (with the children when ``include_children``)."""
        total = self.proc.memory_info().rss
        if self.include_children:
            for child in self.proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:       # the child ended between listing and reading
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.base = self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def extra(self) -> int:
        """``peak - base``: bytes added by the block at its highest point."""
        return self.peak - self.base
