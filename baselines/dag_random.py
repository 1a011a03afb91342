"""Random DAG dispatching: a uniformly random valid (ready task, PE) pair, seeded per episode; never waits.

Source: the uninformed reference point of every scheduling study (e.g. H. Mao et al., "Learning scheduling
algorithms for data processing clusters" (Decima), SIGCOMM 2019, compares against a random policy).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.baselines._dag import DAG


class DagRandom:
    """Uniform choice among the valid pair actions (``reset(env, seed)`` seeds it)."""

    name = "random"
    env_ids = (DAG,)

    def __init__(self) -> None:
        self.env: Any = None
        self.rng = np.random.default_rng(0)

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.env = env.unwrapped
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.env is None:
            raise RuntimeError("random: call reset(env) before act()")
        valid = np.flatnonzero(np.asarray(info["action_mask"])[: self.env.wait_action])
        if valid.size == 0:
            raise RuntimeError("random: no valid (task, PE) pair")
        return int(valid[self.rng.integers(valid.size)])
