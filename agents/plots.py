"""Learning curves read back from TensorBoard event files (no TensorFlow needed, REFERENCE §8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``run_dir`` -> [(step, value), ...], all events kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    p = Path(run_dir)
    if not p.is_dir() or not any(p.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"no TensorBoard event files in {str(p)!r}")
    acc = EventAccumulator(str(p), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def save_learning_curve(run_dir: str | Path, path: str | Path, tags: Sequence[str],
                        references: Mapping[str, float] | None = None, title: str = "",
                        xlabel: str = "iteration", ylabel: str = "") -> Path:
    """Plot ``tags`` (those present) from ``run_dir`` and horizontal reference lines into a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scalars = read_scalars(run_dir)
    present = [t for t in tags if t in scalars]
    if not present:
        raise ValueError(f"none of the tags {list(tags)} are in {run_dir}; it has {sorted(scalars)}")
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    for tag in present:
        steps, vals = zip(*scalars[tag], strict=True)
        ax.plot(steps, vals, marker="o" if len(steps) < 30 else None, markersize=3, label=tag)
    for name, val in (references or {}).items():
        ax.axhline(val, linestyle="--", linewidth=1, color="grey")
        ax.annotate(name, (ax.get_xlim()[0], val), fontsize=8, color="grey", va="bottom")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    return p
