"""Rendering: a text summary (``ansi``) and a Gantt chart (``rgb_array``, PNG via ``schedgym.plotting``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schedgym.envs.dag.sim import DONE, RUNNING, STATUS_NAMES, DagState
from schedgym.envs.dag.types import DagInstance, DagSchedule
from schedgym.plotting import Interval, gantt_figure, render_rgb, save_gantt


def intervals(instance: DagInstance, pe: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[Interval]:
    """Executions with a known start as Gantt intervals (resource = PE, colour = job, label = task)."""
    wl = instance.workload
    return [
        Interval(int(pe[i]), float(start[i]), float(end[i]), int(wl.task_job[i]), wl.task_names[i])
        for i in np.flatnonzero((np.asarray(pe) >= 0) & np.isfinite(start))
    ]


def state_intervals(state: DagState) -> list[Interval]:
    """Finished tasks in full, running ones up to now (what an observer has seen so far)."""
    seen = (state.status == DONE) | ((state.status == RUNNING) & (state.start <= state.now))
    pe = np.where(seen, state.pe, -1)
    end = np.where(state.status == DONE, state.finish, state.now)
    return intervals(state.instance, pe, state.start, end)


def _title(instance: DagInstance, extra: str) -> str:
    pf = instance.platform
    return f"{instance.name} on {pf.name} ({pf.n_pes} PEs)  {extra}"


def render_ansi(state: DagState) -> str:
    inst = state.instance
    counts = np.bincount(state.status, minlength=len(STATUS_NAMES))
    lines = [
        f"{inst.name}: t={state.now:.6g} {inst.platform.time_unit}, tasks "
        + ", ".join(f"{n} {c}" for n, c in zip(STATUS_NAMES, counts.tolist(), strict=False) if c)
    ]
    ivs = state_intervals(state)
    for p, name in enumerate(inst.platform.pe_names):
        row = sorted((iv.start, iv.label) for iv in ivs if iv.resource == p)
        queued = [inst.workload.task_names[q] for q in state.pe_queue[p]]
        lines.append(
            f"{name:<8} "
            + " ".join(f"{lbl}@{s:.4g}" for s, lbl in row)
            + (f"  | queue: {' '.join(queued)}" if queued else "")
        )
    return "\n".join(lines)


def render_rgb_array(state: DagState) -> np.ndarray:
    fig = gantt_figure(
        state_intervals(state), title=_title(state.instance, f"t = {state.now:.6g}"), resource_label="PE"
    )
    return render_rgb(fig)


def save_schedule_gantt(
    instance: DagInstance, schedule: DagSchedule, path: str | Path, title: str = ""
) -> Path:
    """PNG Gantt chart of a complete schedule."""
    end = schedule.finish
    return save_gantt(
        intervals(instance, schedule.pe, schedule.start, end),
        path,
        title=title or _title(instance, f"makespan {float(np.max(end)):.6g}"),
        resource_label="PE",
    )
