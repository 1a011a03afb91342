"""Random dispatching: a uniformly random non-delay candidate, seeded per episode.

Source: S. S. Panwalkar and W. Iskander, "A survey of scheduling rules", Operations Research 25(1):45-61, 1977.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.baselines._dispatching import DispatchingRule, non_delay_candidates


class Random(DispatchingRule):
    """Uniform choice among the non-delay candidates (``reset(env, seed)`` seeds it)."""

    name = "random"

    def __init__(self) -> None:
        super().__init__()
        self.rng = np.random.default_rng(0)

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.state is None:
            raise RuntimeError("random: call reset(env) before act()")
        cands = non_delay_candidates(self.state)
        return int(cands[int(self.rng.integers(cands.size))])
