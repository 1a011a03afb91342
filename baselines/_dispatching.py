"""Shared machinery of the job-shop priority dispatching rules.

Every rule first keeps the non-delay candidates (jobs whose next operation can start at the earliest
possible time among all jobs), then picks the candidate with the best priority; ties go to the lowest job
index. This is the rule semantics behind the community's published Taillard gaps (job-shop-lib's
DispatchingRuleSolver, SelfLabelingJobShop's rule baselines).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.jobshop.sim import JobShopState

JOBSHOP = "schedgym/JobShop-v0"


class DispatchingRule:
    """Base class: subclasses implement ``priority`` (higher is dispatched first)."""

    name = "rule"
    env_ids = (JOBSHOP,)

    def __init__(self) -> None:
        self.state: JobShopState | None = None

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.state = env.unwrapped.state  # type: ignore[attr-defined]

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.state is None:
            raise RuntimeError(f"{self.name}: call reset(env) before act()")
        cands = non_delay_candidates(self.state)
        if cands.size == 1:
            return int(cands[0])
        prio = self.priority(self.state, cands)
        return int(cands[int(np.argmax(prio))])  # argmax takes the first (lowest job index) on ties

    def priority(self, state: JobShopState, jobs: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def non_delay_candidates(state: JobShopState) -> np.ndarray:
    """Jobs whose next operation can start at the minimum earliest start time."""
    est = state.earliest_starts()
    return np.flatnonzero(est == est.min())
