"""Plots of a back-end comparison (matplotlib, Agg): mIoU and cost per variant, and mIoU
against degradation level per back-end."""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from s2c.evaluation.comparison import ComparisonRow  # noqa: E402
from s2c.utils import atomic_write  # noqa: E402

#: Bar colours per row kind.
KIND_COLOURS = {'backend': '#4c72b0', 'reference': '#8c8c8c', 'training': '#55a868'}


def plot_miou_and_time(rows: Sequence[ComparisonRow], path: str, title: str = '') -> None:
    """Bar chart of mIoU per clean-image row, seconds per image as markers on a second axis.

    Args:
        rows: Comparison rows (rows on degraded images are left out).
        path: Output PNG.
        title: Figure title.
    """
    rows = [r for r in rows if not r.degradation]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2), dpi=150)
    x = range(len(rows))
    miou = [0.0 if math.isnan(r.miou) else r.miou for r in rows]
    bars = ax.bar(x, miou, color=[KIND_COLOURS.get(r.kind, '#4c72b0') for r in rows])
    for bar, value in zip(bars, miou):
        ax.text(bar.get_x() + bar.get_width() / 2, value, f'{value:.1f}', ha='center',
                va='bottom', fontsize=7)
    ax.set_ylabel('mIoU (%)')
    ax.set_xticks(list(x), [r.label for r in rows], rotation=35, ha='right', fontsize=8)
    ax.set_ylim(0, max(miou + [1.0]) * 1.15)
    timed = [(i, r.total_s) for i, r in enumerate(rows) if not math.isnan(r.total_s)]
    if timed:
        ax2 = ax.twinx()
        ax2.plot([i for i, _ in timed], [t for _, t in timed], 'o', color='#c44e52',
                 label='seconds / image')
        ax2.set_ylabel('seconds / image', color='#c44e52')
        ax2.tick_params(axis='y', colors='#c44e52')
        ax2.set_ylim(0, max(t for _, t in timed) * 1.25)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_miou_vs_degradation(rows: Sequence[ComparisonRow], path: str, title: str = '') -> None:
    """mIoU against degradation level (0 = clean), one panel per degradation, one line per
    back-end / policy.

    Args:
        rows: Comparison rows; back-end rows on clean images give level 0.
        path: Output PNG.
        title: Figure title.
    """
    names = sorted({r.degradation.split(':')[0] for r in rows if r.degradation})
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.0 * len(names), 3.4), dpi=150,
                             squeeze=False)
    series = sorted({r.label for r in rows if r.kind == 'backend'})
    for ax, name in zip(axes[0], names):
        for label in series:
            points = []
            for r in rows:
                if r.label != label or math.isnan(r.miou):
                    continue
                if r.degradation is None:
                    points.append((0, r.miou))
                elif r.degradation.split(':')[0] == name:
                    points.append((int(r.degradation.split(':')[1]), r.miou))
            if len(points) > 1:
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(6))
        ax.set_xlabel('level (0 = clean)')
        ax.set_ylabel('mIoU (%)')
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc='center left', bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: plt.Figure, path: str) -> None:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, bbox_inches='tight')
    plt.close(fig)
