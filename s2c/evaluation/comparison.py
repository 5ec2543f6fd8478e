"""Rows of a pseudo-label comparison and their Markdown / CSV tables.

One :class:`ComparisonRow` per variant (a prompt back-end with a selection
policy, optionally on degraded images; a reference method; an S2C training
run): its scores against the ground truth and its cost.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from s2c.utils import atomic_write


@dataclass
class ComparisonRow:
    """One variant of a comparison.

    Attributes:
        label: Row name (e.g. ``'hq_sam / hq_official'``, ``'crf'``).
        kind: ``'backend'``, ``'reference'`` or ``'training'``.
        backend: Prompt back-end type, or ``None``.
        policy: Selection policy, or ``None``.
        degradation: ``'name:level'`` of the images the back-end saw, or ``None``.
        miou, mprecision, mrecall: Percent (NaN when nothing was scored).
        per_class_iou: Class name -> IoU percent (NaN: class absent).
        prepare_s, decode_s: Back-end seconds per image (NaN for other rows).
        total_s: Seconds per image of the whole pseudo-label job (NaN: not timed).
        peak_mib: Peak extra memory of the job, MiB (NaN: not measured).
        images: Images scored.
        failed: Images that failed (pseudo-label job or scoring).
        labels_dir: Folder of the row's pseudo-labels (``None`` for training rows).
        note: Free text (e.g. where a training row's figure comes from).
    """

    label: str
    kind: str
    backend: str | None = None
    policy: str | None = None
    degradation: str | None = None
    miou: float = math.nan
    mprecision: float = math.nan
    mrecall: float = math.nan
    per_class_iou: dict[str, float] = field(default_factory=dict)
    prepare_s: float = math.nan
    decode_s: float = math.nan
    total_s: float = math.nan
    peak_mib: float = math.nan
    images: int = 0
    failed: int = 0
    labels_dir: str | None = None
    note: str = ''

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN kept as ``None``)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v
        return {k: clean(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComparisonRow:
        """Inverse of :meth:`to_dict`."""
        def nan(v: Any) -> Any:
            return math.nan if v is None else v
        d = dict(d)
        for k in ('miou', 'mprecision', 'mrecall', 'prepare_s', 'decode_s', 'total_s',
                  'peak_mib'):
            d[k] = nan(d.get(k))
        d['per_class_iou'] = {k: nan(v) for k, v in (d.get('per_class_iou') or {}).items()}
        return cls(**d)


def _fmt(v: float, digits: int = 2) -> str:
    return '' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.{digits}f}'


def comparison_markdown(rows: Sequence[ComparisonRow], title: str = '') -> str:
    """A summary table (one line per row) and a per-class IoU table."""
    lines = [f'# {title}', ''] if title else []
    lines += ['| variant | images on | mIoU | mPrec | mRec | prepare s/img | decode s/img | '
              'total s/img | peak MiB | images | failed |',
              '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f'| {r.label} | {r.degradation or "clean"} | {_fmt(r.miou)} | '
                     f'{_fmt(r.mprecision)} | {_fmt(r.mrecall)} | {_fmt(r.prepare_s, 4)} | '
                     f'{_fmt(r.decode_s, 4)} | {_fmt(r.total_s, 3)} | {_fmt(r.peak_mib, 0)} | '
                     f'{r.images} | {r.failed} |')
    notes = [f'- {r.label}: {r.note}' for r in rows if r.note]
    if notes:
        lines += ['', *notes]
    classes = [c for c in dict.fromkeys(c for r in rows for c in r.per_class_iou)
               if any(not math.isnan(r.per_class_iou.get(c, math.nan)) for r in rows)]
    if classes:   # classes that no row has (absent from every image) are left out
        lines += ['', '| variant | ' + ' | '.join(classes) + ' |',
                  '|---|' + '---:|' * len(classes)]
        for r in rows:
            if r.per_class_iou:
                cells = ' | '.join(_fmt(r.per_class_iou.get(c, math.nan), 1) for c in classes)
                lines.append(f'| {r.label} ({r.degradation or "clean"}) | {cells} |')
    return '\n'.join(lines) + '\n'


def write_comparison(rows: Sequence[ComparisonRow], md_path: str, csv_path: str,
                     title: str = '') -> None:
    """Write ``results.md`` and ``results.csv`` (one line per row, per-class IoUs as
    ``iou_<class>`` columns), atomically."""
    with atomic_write(md_path) as tmp, open(tmp, 'w') as f:
        f.write(comparison_markdown(rows, title))
    classes = list(dict.fromkeys(c for r in rows for c in r.per_class_iou))
    base = ['label', 'kind', 'backend', 'policy', 'degradation', 'miou', 'mprecision',
            'mrecall', 'prepare_s', 'decode_s', 'total_s', 'peak_mib', 'images', 'failed',
            'labels_dir', 'note']
    with atomic_write(csv_path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(base + [f'iou_{c}' for c in classes])
        for r in rows:
            d = asdict(r)
            writer.writerow([d[k] for k in base]
                            + [r.per_class_iou.get(c, math.nan) for c in classes])
