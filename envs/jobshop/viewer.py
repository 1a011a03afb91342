"""Rendering: a text summary (``ansi``) and a Gantt chart image (``rgb_array``)."""

from __future__ import annotations

import numpy as np

from schedgym.envs.jobshop.sim import JobShopState
from schedgym.envs.jobshop.types import JobShopInstance
from schedgym.plotting import Interval, gantt_figure, render_rgb


def intervals(instance: JobShopInstance, start_times: np.ndarray) -> list[Interval]:
    """Scheduled operations (start >= 0) as Gantt intervals (resource = machine, group = job)."""
    out = []
    for j, k in zip(*np.nonzero(np.asarray(start_times) >= 0)):
        s = int(start_times[j, k])
        out.append(Interval(int(instance.machines[j, k]), s, s + int(instance.durations[j, k]), int(j), f"J{j}.{k}"))
    return out


def render_ansi(state: JobShopState) -> str:
    inst = state.instance
    lines = [f"{inst.name}: {state.n_scheduled}/{state.n_jobs * state.n_ops} operations, makespan {state.makespan}"]
    ivs = sorted(intervals(inst, state.start), key=lambda iv: iv.start)
    for m in range(inst.n_machines):
        ops = [(iv.start, iv.label) for iv in ivs if iv.resource == m]
        lines.append(f"M{m:<3}" + " ".join(f"{lbl}@{s}" for s, lbl in ops))
    return "\n".join(lines)


def render_rgb_array(state: JobShopState) -> np.ndarray:
    title = f"{state.instance.name}  makespan {state.makespan}"
    fig = gantt_figure(intervals(state.instance, state.start), title=title,
                       resource_label="machine")
    return render_rgb(fig)
