"""Outcome of a batch job over images: what was done, skipped, failed and why.

One record for every job of s2c (SE-map and embedding caches, CAM inference,
pseudo-labels) and for folder evaluation's failures: a bad image is recorded
with a short reason tag and a message naming the file, and the job goes on.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class FailureLog:
    """Per-image problems of a batch job, grouped by reason.

    Attributes:
        entries: ``reason -> [(image name, message), ...]`` in insertion order;
            a reason is a short snake_case tag (``missing_cam``, ``bad_entry``...).
    """

    entries: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, reason: str, name: str, message: str) -> None:
        """Record that image ``name`` failed for ``reason``."""
        self.entries.setdefault(reason, []).append((name, message))

    def merge(self, other: FailureLog) -> None:
        """Append all entries of ``other``."""
        for reason, items in other.entries.items():
            self.entries.setdefault(reason, []).extend(items)

    @property
    def count(self) -> int:
        """Number of distinct failed images (an image may have several reasons)."""
        return len({n for items in self.entries.values() for n, _ in items})

    def counts(self) -> dict[str, int]:
        """``reason -> number of images``."""
        return {k: len(v) for k, v in self.entries.items()}

    def names(self, reason: str) -> list[str]:
        """Image names that failed for ``reason`` (empty list if none)."""
        return [n for n, _ in self.entries.get(reason, [])]

    def messages(self) -> dict[str, str]:
        """``name -> message`` (the first message of an image with several reasons)."""
        out: dict[str, str] = {}
        for items in self.entries.values():
            for name, message in items:
                out.setdefault(name, message)
        return out

    def format(self, max_per_reason: int = 10, indent: str = '') -> str:
        """Multi-line text: one header per reason with its count, then names and messages."""
        if not self.entries:
            return f'{indent}no failures'
        lines = [f'{indent}{self.count} image(s) failed:']
        for reason, items in self.entries.items():
            lines.append(f'{indent}  {reason}: {len(items)}')
            for name, msg in items[:max_per_reason]:
                lines.append(f'{indent}    {name}: {msg}')
            if len(items) > max_per_reason:
                lines.append(f'{indent}    ... and {len(items) - max_per_reason} more')
        return '\n'.join(lines)

    def to_dict(self) -> dict[str, dict]:
        """JSON-ready ``reason -> {count, images: {name: message}}``."""
        return {k: dict(count=len(v), images=dict(v)) for k, v in self.entries.items()}


def format_bytes(n: float) -> str:
    """``1.5 MiB``-style size."""
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
        n /= 1024
    return f'{n:.1f} TiB'


def _listing(reasons: Mapping[str, str], max_lines: int) -> list[str]:
    lines = [f'    {name}: {reason}' for name, reason in list(reasons.items())[:max_lines]]
    if len(reasons) > max_lines:
        lines.append(f'    ... and {len(reasons) - max_lines} more')
    return lines


@dataclass
class JobSummary:
    """Outcome of a job over a list of images (or of a ``--verify`` pass).

    Attributes:
        kind: What the job writes (``'se_maps'``, ``'sam_embeddings'``, ``'cams'``,
            ``'pseudo_labels'``).
        out_dir: Output folder.
        mode: ``'compute'``, ``'repair'`` (compute after the full check) or ``'verify'``.
        total: Images assigned to this process.
        done: Names computed and written by this run.
        skipped: Names whose output already existed (resume).
        failures: Failed (compute) or bad (verify) images, by reason.
        repaired: Repair: name -> why its old entry was bad (deleted, then
            computed again: also in ``done``, or in ``failures``).
        wall_s: Wall time of the run in seconds.
        bytes_on_disk: Size of all entries in ``out_dir`` (0 when not measured).
        entries_on_disk: Number of entries in ``out_dir``.
        shard: ``(I, N)`` or ``None``; rank / world: torchrun position.
        notes: Lines printed after the listing (e.g. the remedy of a verify run).
    """

    kind: str
    out_dir: str
    mode: str = 'compute'
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: FailureLog = field(default_factory=FailureLog)
    repaired: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    bytes_on_disk: int = 0
    entries_on_disk: int = 0
    shard: tuple[int, int] | None = None
    rank: int = 0
    world: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failed (or, for verify, bad) image."""
        return self.failures.count == 0

    @property
    def failed(self) -> dict[str, str]:
        """``name -> message`` of every failed (or bad) image."""
        return self.failures.messages()

    def fail(self, name: str, message: str, reason: str = 'error') -> None:
        """Record a failed image."""
        self.failures.add(reason, name, message)

    @property
    def images_per_s(self) -> float:
        """Images computed (``done``) or checked (verify) per second of wall time."""
        n = self.total if self.mode == 'verify' else len(self.done)
        return n / self.wall_s if self.wall_s > 0 else 0.0

    def format(self, max_listed: int = 50) -> str:
        """Multi-line text for the log / terminal (counts, size, repaired, failures, notes)."""
        where = []
        if self.shard is not None:
            where.append(f'shard {self.shard[0]}/{self.shard[1]}')
        if self.world > 1:
            where.append(f'rank {self.rank}/{self.world}')
        head = f'[{self.kind}] {self.mode} summary' + (f' ({", ".join(where)})' if where else '')
        lines = [head, f'  folder      : {self.out_dir}']
        n_failed = self.failures.count
        if self.mode != 'verify':
            lines.append(f'  images      : {self.total} = done {len(self.done)} + skipped '
                         f'{len(self.skipped)} + failed {n_failed}')
            lines.append(f'  wall time   : {self.wall_s:.1f} s ({self.images_per_s:.2f} images/s '
                         'computed)')
        else:
            lines.append(f'  images      : {self.total} checked, {self.total - n_failed} good, '
                         f'{n_failed} bad')
            lines.append(f'  wall time   : {self.wall_s:.1f} s')
        if self.entries_on_disk:
            per = self.bytes_on_disk / self.entries_on_disk
            lines.append(f'  size on disk: {format_bytes(self.bytes_on_disk)} in '
                         f'{self.entries_on_disk} entries ({format_bytes(per)} per entry)')
        if self.repaired:
            lines.append(f'  REPAIRED ({len(self.repaired)}) - bad entries deleted and computed '
                         'again; they were:')
            lines.extend(_listing(self.repaired, max_listed))
        if n_failed:
            label = 'BAD ENTRIES' if self.mode == 'verify' else 'FAILED'
            lines.append(f'  {label} ({n_failed}):')
            lines.append(self.failures.format(max_listed, indent='  ').split('\n', 1)[1])
        lines.extend(self.notes)
        return '\n'.join(lines)
