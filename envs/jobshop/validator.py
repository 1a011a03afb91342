"""Independent job-shop schedule validator: recomputes the makespan from start times alone.

Knows nothing of the env or simulator; every makespan the gym reports passes through here.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance


class ScheduleError(ValueError):
    """A schedule violates the job-shop constraints."""


def validate_schedule(instance: JobShopInstance, start_times: np.ndarray) -> dict[str, int]:
    """Check precedence, machine capacity and shape; return ``{"makespan": ...}``."""
    s = np.asarray(start_times)
    if s.shape != instance.machines.shape:
        raise ScheduleError(f"start_times shape {s.shape} != instance shape {instance.machines.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        raise ScheduleError(f"start_times must be integers, got dtype {s.dtype}")
    if (s < 0).any():
        j, k = np.argwhere(s < 0)[0]
        raise ScheduleError(f"operation ({j},{k}) has a negative start time {s[j, k]} (unscheduled?)")
    d = instance.durations
    end = s + d
    # Precedence within each job.
    late = s[:, 1:] < end[:, :-1]
    if late.any():
        j, k = np.argwhere(late)[0]
        raise ScheduleError(
            f"job {j}: operation {k + 1} starts at {s[j, k + 1]} before operation {k} ends at {end[j, k]}"
        )
    # No overlap on any machine (zero-length operations occupy nothing).
    for m in range(instance.n_machines):
        jj, kk = np.nonzero(instance.machines == m)
        order = np.lexsort((end[jj, kk], s[jj, kk]))
        ms, me = s[jj, kk][order], end[jj, kk][order]
        busy = d[jj, kk][order] > 0
        ms, me = ms[busy], me[busy]
        clash = ms[1:] < me[:-1]
        if clash.any():
            i = int(np.argmax(clash))
            raise ScheduleError(f"machine {m}: an operation starts at {ms[i + 1]} before another ends at {me[i]}")
    return {"makespan": int(end.max())}
