"""Independent DAG schedule validator: checks a schedule against the instance alone and recomputes objectives.

Knows nothing of the env or simulator. Checks: every task placed on a PE that supports it; durations equal
``exec_time * noise``; no task starts before its job arrives; precedence with communication delays
(``start(child) >= finish(parent) + latency + data / bandwidth`` across PEs); no two executions overlap on a
PE. Recomputes the makespan, job slowdowns (response time / critical-path lower bound) and PE utilisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.dag.types import DagInstance, DagSchedule

RTOL = 1e-9


class ScheduleError(ValueError):
    """A schedule violates the DAG-dispatch constraints; the message names the task or PE."""


def _tol(x: float) -> float:
    return RTOL * max(1.0, abs(x))


def critical_path_lower_bounds(instance: DagInstance) -> np.ndarray:
    """(J,) each job's longest path with every task on its fastest PE and free communication."""
    wl = instance.workload
    fastest = instance.exec_time.min(axis=1)
    t = wl.n_tasks
    indeg = np.bincount(wl.edge_dst, minlength=t)
    children: list[list[int]] = [[] for _ in range(t)]
    for s, d in zip(wl.edge_src.tolist(), wl.edge_dst.tolist(), strict=False):
        children[s].append(d)
    best = fastest.copy()
    stack = [i for i in range(t) if indeg[i] == 0]
    left = indeg.tolist()
    while stack:
        i = stack.pop()
        for c in children[i]:
            best[c] = max(best[c], best[i] + fastest[c])
            left[c] -= 1
            if left[c] == 0:
                stack.append(c)
    cp = np.zeros(wl.n_jobs)
    np.maximum.at(cp, wl.task_job, best)
    return np.maximum(cp, 1e-12)


def validate_schedule(instance: DagInstance, schedule: DagSchedule | dict[str, Any]) -> dict[str, float]:
    """Check ``schedule`` (a ``DagSchedule`` or its JSON dict) and return its objectives.

    Returns makespan, mean/p99/max job slowdown, mean job response time and mean PE utilisation over
    [first arrival, makespan].
    """
    if isinstance(schedule, dict):
        schedule = DagSchedule.from_json(schedule)
    wl, pf = instance.workload, instance.platform
    t, p = wl.n_tasks, pf.n_pes
    names = wl.task_names
    pe, start, finish, noise = (
        np.asarray(a) for a in (schedule.pe, schedule.start, schedule.finish, schedule.noise)
    )
    for nm, a in (("pe", pe), ("start", start), ("finish", finish), ("noise", noise)):
        if a.shape != (t,):
            raise ScheduleError(f"schedule.{nm} has shape {a.shape}; the instance has {t} tasks")
    for i in range(t):
        if not 0 <= pe[i] < p:
            raise ScheduleError(f"task {names[i]!r} is not placed (pe = {pe[i]}; expected 0..{p - 1})")
    pe = pe.astype(np.int64)
    dur_exp = instance.exec_time[np.arange(t), pe]
    for i in np.flatnonzero(np.isinf(dur_exp)).tolist():
        raise ScheduleError(
            f"task {names[i]!r} (type {wl.task_type[i]!r}) is placed on PE {pf.pe_names[pe[i]]!r}, "
            f"which does not support it"
        )
    for i in np.flatnonzero(~np.isfinite(noise) | (noise <= 0)).tolist():
        raise ScheduleError(
            f"task {names[i]!r} has runtime noise factor {noise[i]}; expected a finite number > 0"
        )
    for i in np.flatnonzero(~np.isfinite(start)).tolist():
        raise ScheduleError(f"task {names[i]!r} has no start time ({start[i]})")
    end = start + dur_exp * noise
    for i in range(t):
        if not abs(finish[i] - end[i]) <= _tol(end[i]):
            raise ScheduleError(
                f"task {names[i]!r}: finish {finish[i]} != start {start[i]} + exec time "
                f"{dur_exp[i]} x noise {noise[i]} = {end[i]}"
            )
    arrival = wl.job_arrival[wl.task_job]
    for i in np.flatnonzero(start < arrival - RTOL * np.maximum(1.0, np.abs(arrival))).tolist():
        raise ScheduleError(f"task {names[i]!r} starts at {start[i]} before its job arrives at {arrival[i]}")
    for e in range(wl.n_edges):
        s, d = int(wl.edge_src[e]), int(wl.edge_dst[e])
        ready = end[s]
        if pe[s] != pe[d]:
            ready = ready + pf.latency[pe[s], pe[d]] + wl.edge_data[e] / pf.bandwidth[pe[s], pe[d]]
        if start[d] < ready - _tol(ready):
            raise ScheduleError(
                f"task {names[d]!r} starts at {start[d]} on PE {pf.pe_names[pe[d]]!r} before the data "
                f"of parent {names[s]!r} (finish {end[s]} on PE {pf.pe_names[pe[s]]!r}) arrives at "
                f"{ready}"
            )
    for q in range(p):
        on = np.flatnonzero((pe == q) & (end > start))  # zero-length executions occupy nothing
        order = on[np.lexsort((end[on], start[on]))]
        clash = start[order[1:]] < end[order[:-1]] - RTOL * np.maximum(1.0, np.abs(end[order[:-1]]))
        if clash.any():
            k = int(np.argmax(clash))
            prev, nxt = int(order[k]), int(order[k + 1])
            raise ScheduleError(
                f"PE {pf.pe_names[q]!r}: task {names[nxt]!r} starts at {start[nxt]} before task "
                f"{names[prev]!r} ends at {end[prev]}"
            )
    makespan = float(end.max())
    job_end = np.full(wl.n_jobs, -np.inf)
    np.maximum.at(job_end, wl.task_job, end)
    response = job_end - wl.job_arrival
    slowdown = response / critical_path_lower_bounds(instance)
    t0 = float(wl.job_arrival.min())
    span = makespan - t0
    busy = float((end - start).sum())
    return {
        "makespan": makespan,
        "mean_slowdown": float(slowdown.mean()),
        "p99_slowdown": float(np.percentile(slowdown, 99)),
        "max_slowdown": float(slowdown.max()),
        "mean_response": float(response.mean()),
        "utilisation": busy / (p * span) if span > 0 else 0.0,
    }
