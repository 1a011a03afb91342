"""DAG-dispatch rewards: minus the increase of total job slowdown (default) or of the makespan.

``slowdown``: between decisions the clock advances; every job in the system (arrived, unfinished, including
jobs waiting for admission) accrues ``dt / cp_lower(job)`` slowdown. The reward is minus that increase, so the
episode return is exactly minus the sum of the jobs' slowdowns (response time / critical-path lower bound):
Decima's "minus time x jobs in system" reward, normalised per job.

``makespan``: minus the clock advance divided by the instance's ``time_scale``; the episode return is
``-(makespan - first arrival) / time_scale``.
"""

from __future__ import annotations

REWARDS = ("slowdown", "makespan")


def slowdown_reward(previous_area: float, new_area: float) -> float:
    """Minus the slowdown accrued by the jobs in the system since the previous decision."""
    return -(new_area - previous_area)


def makespan_reward(previous_now: float, new_now: float, time_scale: float) -> float:
    """Minus the clock advance since the previous decision, in units of ``time_scale``."""
    return -(new_now - previous_now) / time_scale
