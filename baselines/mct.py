"""MCT: Minimum Completion Time. The first ready task (FIFO) goes to the PE where it would finish earliest.

Source: R. Armstrong, D. Hensgen and T. Kidd, "The relative performance of various mapping algorithms is
independent of sizable variances in run-time predictions", 7th IEEE Heterogeneous Computing Workshop (HCW),
1998; T. D. Braun et al., JPDC 61(6):810-837, 2001.

Completion = max(PE's committed queue drains, inputs arrive) + expected run time; ties go to the lowest PE.
"""

from __future__ import annotations

from schedgym.baselines._dag import DagHeuristic, argmin_first
from schedgym.envs.dag.sim import DagState


class Mct(DagHeuristic):
    """Minimum Completion Time."""

    name = "mct"

    def choose(self, state: DagState) -> tuple[int, int]:
        task = next(iter(state.ready))
        return task, argmin_first(state.earliest_finish([task])[0])
