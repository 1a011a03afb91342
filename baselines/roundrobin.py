"""Round-robin: ready tasks in FIFO order go to the PEs in cyclic order (skipping PEs that cannot run them).

Source: the classic load-agnostic baseline; see e.g. T. D. Braun et al., "A comparison of eleven static
heuristics for mapping a class of independent tasks onto heterogeneous distributed computing systems",
JPDC 61(6):810-837, 2001 (its "OLB" assigns to the next available machine; round-robin ignores availability).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from schedgym.baselines._dag import DagHeuristic
from schedgym.envs.dag.sim import DagState


class RoundRobin(DagHeuristic):
    """Round-robin over the PEs."""

    name = "roundrobin"

    def __init__(self) -> None:
        super().__init__()
        self.next_pe = 0

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        self.next_pe = 0

    def choose(self, state: DagState) -> tuple[int, int]:
        task = next(iter(state.ready))
        run = state.instance.exec_time[task]
        n = run.size
        for k in range(n):
            p = (self.next_pe + k) % n
            if np.isfinite(run[p]):
                self.next_pe = (p + 1) % n
                return task, p
        raise RuntimeError(f"task {task} is supported by no PE")
