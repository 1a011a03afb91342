"""MET: Minimum Execution Time. The first ready task (FIFO) goes to its fastest PE; load is ignored.

Source: R. Armstrong, D. Hensgen and T. Kidd, "The relative performance of various mapping algorithms is
independent of sizable variances in run-time predictions", 7th IEEE Heterogeneous Computing Workshop (HCW),
1998; T. D. Braun et al., "A comparison of eleven static heuristics for mapping a class of independent tasks
onto heterogeneous distributed computing systems", JPDC 61(6):810-837, 2001.

Ties between equally fast PEs (identical cores) go to the earliest expected finish, then the lowest index.
"""

from __future__ import annotations

from schedgym.baselines._dag import DagHeuristic, lexmin
from schedgym.envs.dag.sim import DagState


class Met(DagHeuristic):
    """Minimum Execution Time."""

    name = "met"

    def choose(self, state: DagState) -> tuple[int, int]:
        task = next(iter(state.ready))
        run = state.instance.exec_time[task]
        return task, lexmin(run, state.earliest_finish([task])[0])
