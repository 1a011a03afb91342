"""ETF: Earliest Task First. Among all (ready task, PE) pairs, start the one that can start earliest.

Source: J.-J. Hwang, Y.-C. Chow, F. D. Anger and C.-Y. Lee, "Scheduling precedence graphs in systems with
interprocessor communication times", SIAM J. Computing 18(2):244-257, 1989 (used as a DS3 baseline: S. E. Arda
et al., IEEE Trans. Computers 69(8), 2020).

Ties on the start time go to the task with the larger static level (HEFT's upward rank with mean times),
then the earlier finish, then FIFO order and the lowest PE.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.baselines._dag import DagHeuristic, lexmin
from schedgym.envs.dag.sim import DagState


class Etf(DagHeuristic):
    """Earliest Task First."""

    name = "etf"

    def __init__(self) -> None:
        super().__init__()
        self.level: np.ndarray | None = None

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        self.level = None

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.level is None or self.level.size != self.state.instance.n_tasks:
            self.level = self.state.instance.upward_rank()
        return super().act(obs, info)

    def choose(self, state: DagState) -> tuple[int, int]:
        tasks = state.ready_tasks()
        est = state.earliest_start(tasks)
        run = state.instance.exec_time[tasks]
        est = np.where(np.isinf(run), np.inf, est)
        n, p = est.shape
        lvl = np.repeat(self.level[tasks], p)  # type: ignore[index]
        k = lexmin(est.ravel(), -lvl, (est + run).ravel())
        return int(tasks[k // p]), int(k % p)
