"""MinMin: among the ready tasks, map the one whose best completion time is smallest to that PE.

Source: O. H. Ibarra and C. E. Kim, "Heuristic algorithms for scheduling independent tasks on nonidentical
processors", J. ACM 24(2):280-289, 1977; T. D. Braun et al., JPDC 61(6):810-837, 2001.

One pair per decision; the env updates PE availability, so successive decisions realise MinMin's batch loop
over the ready set. Ties: FIFO task, lowest PE.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._dag import DagHeuristic
from schedgym.envs.dag.sim import DagState


class MinMin(DagHeuristic):
    """Min-Min."""

    name = "minmin"

    def choose(self, state: DagState) -> tuple[int, int]:
        tasks = state.ready_tasks()
        eft = state.earliest_finish(tasks)
        best_pe = eft.argmin(axis=1)
        r = int(np.argmin(eft[np.arange(len(tasks)), best_pe]))
        return int(tasks[r]), int(best_pe[r])
