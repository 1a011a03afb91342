"""Learning curves read back from TensorBoard event files (no TensorFlow needed, REFERENCE §8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple


class Panel(NamedTuple):
    """One subplot: the scalar tags to draw against their TensorBoard step."""

    title: str
    xlabel: str
    tags: Sequence[str]
    ylabel: str = ""
    references: Mapping[str, float] = {}  # name -> value, drawn as dashed horizontal lines


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``run_dir`` -> [(step, value), ...], all events kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    p = Path(run_dir)
    if not p.is_dir() or not any(p.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event files in {str(p)!r}")
    acc = EventAccumulator(str(p), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def save_learning_curve(run_dir: str | Path, path: str | Path, panels: Sequence[Panel],
                        title: str = "") -> Path:
    """Draw the panels whose tags exist in ``run_dir`` side by side into a PNG (empty panels are dropped)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scalars = read_scalars(run_dir)
    drawn = [(p, [t for t in p.tags if t in scalars]) for p in panels]
    drawn = [(p, tags) for p, tags in drawn if tags]
    if not drawn:
        wanted = sorted({t for p in panels for t in p.tags})
        raise ValueError(f"none of the tags {wanted} are in {run_dir}; it has {sorted(scalars)}")
    fig = Figure(figsize=(6 * len(drawn), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    for i, (panel, tags) in enumerate(drawn):
        ax = fig.add_subplot(1, len(drawn), i + 1)
        for tag in tags:
            steps, vals = zip(*scalars[tag], strict=True)
            ax.plot(steps, vals, marker="o" if len(steps) < 40 else None, markersize=3, label=tag)
        for name, val in panel.references.items():
            ax.axhline(val, linestyle="--", linewidth=1, color="grey", label=name)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    return p
