"""Shared machinery of the LLM-serving routing baselines.

Every router reads the simulator the env exposes (``env.unwrapped.state``, a ``ClusterSim``): the pending
request (``state.next_req``), per-instance live statistics (``state.live_stats()``, columns
``features.LIVE``) and the routing mask (``info["action_mask"]``). With the agent migration decision point
(``migration="agent"``) a plain router answers every tick with "no migration". Ties are broken uniformly at random with
the episode's seed, so no instance is favoured by its index.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.serving.sim import ClusterSim

SERVING = "schedgym/LLMServing-v0"
LIVE = "schedgym/LLMServingLive-v0"  # the same task on real engines: its ``state`` offers the same view
WAITING, RUNNING, SWAPPED, USED_BLOCKS, PENDING_TOKENS, CONTEXT_TOKENS, DECODE_STEP = range(7)


class Router:
    """Base class: subclasses implement ``choose`` over the valid instances."""

    name = "router"
    env_ids = (SERVING, LIVE)

    def __init__(self) -> None:
        self.state: ClusterSim | None = None
        self.rng = np.random.default_rng(0)

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.state = env.unwrapped.state  # type: ignore[attr-defined]
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.state is None:
            raise RuntimeError(f"{self.name}: call reset(env) before act()")
        if info.get("decision") == "migrate":  # a router only routes: "no migration" (the last action)
            return len(info["action_mask"]) - 1
        valid = np.flatnonzero(info["action_mask"])
        if valid.size == 0:
            raise RuntimeError(f"{self.name}: no valid instance for the pending request")
        return int(self.choose(self.state, self.state.next_req, valid))

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        raise NotImplementedError

    def argmin(self, valid: np.ndarray, score: np.ndarray) -> int:
        """The valid instance with the lowest score (random among ties)."""
        s = score[valid]
        best = valid[s == s.min()]
        return int(best[self.rng.integers(best.size)]) if best.size > 1 else int(best[0])


def outstanding(state: ClusterSim) -> np.ndarray:
    """Requests on each instance: waiting + running + swapped out."""
    return state.outstanding()
