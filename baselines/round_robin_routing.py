"""Round-robin routing: instances in turn, skipping those that cannot hold the request.

Source: the default load-balancing policy of serving gateways; Vidur's ``round_robin`` global scheduler
(Agrawal et al., "Vidur: A Large-Scale Simulation Framework for LLM Inference", MLSys 2024).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from schedgym.baselines._routing import Router
from schedgym.envs.serving.sim import ClusterSim


class RoundRobinRouting(Router):
    """The next instance after the previous choice that is valid for the request."""

    name = "round_robin"

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        self.next = 0

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        n = len(state.engines)
        order = (np.arange(n) + self.next) % n
        pick = int(order[np.isin(order, valid)][0])
        self.next = (pick + 1) % n
        return pick
