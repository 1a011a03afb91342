"""Memory maps: address x time rectangles (matplotlib ``Figure`` + Agg, no pyplot state), and text summaries.

``memory_map_figure`` draws any set of rectangles; ``mapping_figure`` adds, under the fast-memory map of a
tier mapping, each op's execution time against its all-slow time; ``offsets_figure`` draws an offset
assignment with its capacity line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from schedgym.envs.memory.types import MemoryProgram, OffsetInstance
from schedgym.plotting import render_rgb


def _figure(height: float, rows: int = 1, ratios: tuple[float, ...] = (1.0,)) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False, gridspec_kw={"height_ratios": list(ratios)})[:, 0].tolist()
    return fig, axes


def draw_rectangles(
    ax: Any,
    lower: np.ndarray,
    upper: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    capacity: int | None,
    time_label: str = "time",
    address_unit: float = 1.0,
    address_label: str = "address",
) -> None:
    """Rectangles [lower, upper) x [offset, offset + size) for buffers with offset >= 0, one colour each."""
    import matplotlib
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    idx = np.flatnonzero(np.asarray(offset) >= 0)
    cmap = matplotlib.colormaps["tab20"]
    rects = [
        Rectangle(
            (float(lower[b]), offset[b] / address_unit), float(upper[b] - lower[b]), size[b] / address_unit
        )
        for b in idx.tolist()
    ]
    ax.add_collection(
        PatchCollection(
            rects, facecolors=[cmap(b % 20) for b in idx.tolist()], edgecolors="black", linewidths=0.3
        )
    )
    t0 = float(np.min(lower)) if len(lower) else 0.0
    t1 = float(np.max(upper)) if len(upper) else 1.0
    top = float((offset[idx] + size[idx]).max()) / address_unit if idx.size else 0.0
    ymax = max(top, (capacity or 0) / address_unit) * 1.05 or 1.0
    if capacity is not None:
        ax.axhline(capacity / address_unit, color="red", linewidth=1.0, linestyle="--", label="capacity")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(t0, t1)
    ax.set_ylim(0, ymax)
    ax.set_xlabel(time_label)
    ax.set_ylabel(address_label)


def offsets_figure(instance: OffsetInstance, offsets: np.ndarray, title: str = "") -> Any:
    """Memory map of an (optionally partial: -1 = unplaced) offset assignment."""
    fig, (ax,) = _figure(5.0)
    unit, label = _unit(instance.capacity)
    draw_rectangles(
        ax,
        instance.lower,
        instance.upper,
        instance.size,
        np.asarray(offsets),
        instance.capacity,
        "time",
        unit,
        f"address ({label})",
    )
    ax.set_title(title or instance.name)
    fig.tight_layout()
    return fig


def mapping_figure(
    program: MemoryProgram,
    tier: np.ndarray,
    offset: np.ndarray,
    op_time: np.ndarray,
    all_slow: np.ndarray,
    title: str = "",
) -> Any:
    """Fast-memory map (address x op index) over each op's time with this mapping vs all-slow."""
    fig, (ax, ax2) = _figure(7.0, 2, (2.0, 1.0))
    unit, label = _unit(program.spec.fast_capacity)
    off = np.where(np.asarray(tier) == 1, np.asarray(offset), -1)
    draw_rectangles(
        ax,
        program.buffer_lower,
        program.buffer_upper,
        program.buffer_size,
        off,
        program.spec.fast_capacity,
        "op index",
        unit,
        f"fast-memory address ({label})",
    )
    ax.set_title(title or program.name)
    x = np.arange(program.n_ops)
    ax2.bar(x, all_slow, width=1.0, color="lightgray", label="all slow")
    ax2.bar(x, op_time, width=1.0, color="tab:blue", label="this mapping")
    ax2.plot(x, program.op_compute, color="black", linewidth=0.6, label="compute")
    ax2.set_xlim(-0.5, program.n_ops - 0.5)
    ax2.set_xlabel("op index")
    ax2.set_ylabel("op time (ns)")
    ax2.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    return p


def rgb(fig: Any) -> np.ndarray:
    """(H, W, 3) uint8 pixels."""
    return render_rgb(fig)


def mapping_ansi(
    program: MemoryProgram,
    tier: np.ndarray,
    offset: np.ndarray,
    current: int,
    time_ns: float,
    all_slow_ns: float,
) -> str:
    fast = np.flatnonzero(tier == 1)
    lines = [
        f"{program.name}: {int((tier >= 0).sum())}/{program.n_buffers} buffers decided, {fast.size} in fast "
        f"memory; time {time_ns:.1f} ns (all slow {all_slow_ns:.1f} ns, saving "
        f"{100 * (1 - time_ns / all_slow_ns) if all_slow_ns else 0:.2f} %)"
    ]
    if current >= 0:
        lines.append(
            f"current: buffer {current} {program.buffer_names[current]!r} "
            f"size {int(program.buffer_size[current])} "
            f"live [{int(program.buffer_lower[current])}, {int(program.buffer_upper[current])})"
        )
    for b in fast[:20].tolist():
        lines.append(
            f"  fast {program.buffer_names[b]!r} @ {int(offset[b])} (+{int(program.buffer_size[b])})"
        )
    if fast.size > 20:
        lines.append(f"  ... {fast.size - 20} more")
    return "\n".join(lines)


def offsets_ansi(instance: OffsetInstance, offsets: np.ndarray, peak: int) -> str:
    placed = np.flatnonzero(offsets >= 0)
    return (
        f"{instance.name}: {placed.size}/{instance.n_buffers} buffers placed, peak {peak} "
        f"({peak / instance.capacity:.3f} x capacity {instance.capacity})"
    )


def _unit(capacity: int) -> tuple[float, str]:
    if capacity >= 1 << 20:
        return float(1 << 20), "MiB"
    if capacity >= 1 << 10:
        return float(1 << 10), "KiB"
    return 1.0, "bytes"
