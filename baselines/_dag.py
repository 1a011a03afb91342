"""Shared machinery of the immediate-mode DAG heuristics (MET, MCT, MinMin, MaxMin, ETF, round-robin, random).

They act on the env's ready tasks only and never wait: each decision appends one ready task to one PE's queue,
judged by the expected times the simulator exposes (``DagState.earliest_start`` / ``earliest_finish`` account
for each PE's committed queue and for the input transfers). "FIFO" = the order in which tasks became ready.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.dag.sim import DagState

DAG = "schedgym/DAGDispatch-v0"


class DagHeuristic:
    """Base class: subclasses implement ``choose(state) -> (task, pe)``."""

    name = "dag-heuristic"
    env_ids = (DAG,)

    def __init__(self) -> None:
        self.env: Any = None

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.env = env.unwrapped

    @property
    def state(self) -> DagState:
        if self.env is None:
            raise RuntimeError(f"{self.name}: call reset(env) before act()")
        return self.env.state

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        st = self.state
        if not st.ready:
            raise RuntimeError(f"{self.name}: act() called with no ready task")
        task, pe = self.choose(st)
        return int(self.env.action_of(task, pe))

    def choose(self, state: DagState) -> tuple[int, int]:
        raise NotImplementedError


def argmin_first(values: np.ndarray) -> int:
    """Index of the smallest value (the first on ties); values may contain inf but not only inf."""
    return int(np.argmin(values))


def lexmin(*keys: np.ndarray) -> int:
    """Index minimising the keys lexicographically (first key most significant; first index on full ties)."""
    return int(np.lexsort(keys[::-1])[0])
