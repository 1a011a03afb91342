"""Plots: Gantt charts of any schedule (resources on the y axis, one colour per group).

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, so no pyplot global state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
    """One busy interval: ``resource`` (row), [start, end), ``group`` (colour) and a label."""

    resource: int
    start: float
    end: float
    group: int
    label: str = ""


def gantt_figure(intervals: Sequence[Interval], title: str = "", resource_label: str = "resource",
                 width: float = 12.0) -> object:
    """A matplotlib Figure with one row per resource."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_res = 1 + max((iv.resource for iv in intervals), default=0)
    fig = Figure(figsize=(width, max(2.0, 0.35 * n_res + 1.2)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    cmap = __import__("matplotlib").colormaps["tab20"]
    for iv in intervals:
        ax.barh(iv.resource, iv.end - iv.start, left=iv.start, height=0.8, color=cmap(iv.group % 20),
                edgecolor="black", linewidth=0.3)
    ax.set_yticks(range(n_res))
    ax.set_yticklabels([f"{resource_label[0].upper()}{r}" for r in range(n_res)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time")
    ax.set_ylabel(resource_label)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def render_rgb(fig: object) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a figure."""
    fig.canvas.draw()  # type: ignore[attr-defined]
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]


def save_gantt(
    intervals: Sequence[Interval], path: str | Path, title: str = "", resource_label: str = "resource"
) -> Path:
    """Write a Gantt chart PNG and return its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    gantt_figure(intervals, title, resource_label).savefig(p)  # type: ignore[attr-defined]
    return p
