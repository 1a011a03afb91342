"""Rendering: a text table of the instances (``ansi``), an iteration Gantt chart (``rgb_array``), and
latency CDF plots for comparing routing policies."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from schedgym.envs.serving.sim import ClusterSim
from schedgym.plotting import Interval, gantt_figure, render_rgb

PREFILL, DECODE, MIXED = 0, 2, 4  # colours (tab20 indices)


def render_ansi(sim: ClusterSim) -> str:
    stats = sim.live_stats()
    lines = [f"t={sim.now:.3f}s  routed {sim.settled}/{len(sim.arrival)}  finished {sim.n_finished}  "
             f"SLO met {sim.n_slo_ok}  rejected {len(sim.rejected)}",
             f"{'inst':<5}{'instance':<34}{'wait':>6}{'run':>6}{'swap':>6}{'KV used':>10}{'step ms':>9}"]
    for i, (e, row) in enumerate(zip(sim.engines, stats, strict=False)):
        spec = sim.cluster.instances[i]
        lines.append(f"{i:<5}{spec.label:<34}{int(row[0]):>6}{int(row[1]):>6}{int(row[2]):>6}"
                     f"{row[3] / e.total_blocks:>10.1%}{row[6] * 1e3:>9.2f}")
    return "\n".join(lines)


def intervals(sim: ClusterSim) -> list[Interval]:
    """Iteration segments as Gantt intervals: prefill-only, decode-only and mixed (chunked) iterations."""
    out = []
    for i, t0, t1, iters, decode, prefill in sim.seg_log:
        group = MIXED if decode and prefill else (DECODE if decode else PREFILL)
        out.append(Interval(i, t0, t1, group, f"{iters}"))
    return out


def render_rgb_array(sim: ClusterSim) -> np.ndarray:
    fig = gantt_figure(intervals(sim), title=f"{sim.workload.name}: iterations (blue prefill, green decode, "
                       f"red mixed)", resource_label="instance")
    return render_rgb(fig)


def cdf_figure(samples: Mapping[str, np.ndarray], xlabel: str = "TTFT (s)", title: str = "") -> object:
    """Empirical CDFs of a latency per policy, log-scaled x axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    for name, v in samples.items():
        v = np.sort(np.asarray(v, float)[~np.isnan(np.asarray(v, float))])
        if v.size:
            ax.step(np.maximum(v, 1e-4), np.arange(1, v.size + 1) / v.size, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of requests")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_cdf(samples: Mapping[str, np.ndarray], path: str | Path, xlabel: str = "TTFT (s)", title: str = "") -> Path:
    """Write a latency CDF PNG (one curve per policy) and return its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cdf_figure(samples, xlabel, title).savefig(p)  # type: ignore[attr-defined]
    return p
