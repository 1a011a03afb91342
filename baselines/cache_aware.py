"""SGLang-style cache-aware routing: send a request where its prompt prefix is most likely cached, unless
the load is imbalanced.

Source: SGLang model gateway (sgl-project/sglang ``sgl-router``), policy ``cache_aware``: the router keeps
an approximate radix tree per worker of the prompts it routed there. If the load is imbalanced
(busiest - idlest > ``balance_abs_threshold`` = 64 and busiest > ``balance_rel_threshold`` = 1.5 x idlest,
in outstanding requests), route to the least loaded worker; else if the best prefix match rate is at least
``cache_threshold`` (0.3; 0.5 in older releases), route to that worker; else to the worker with the
smallest tree. Here prefixes are the Mooncake traces' 512-token block hashes; a request without hashes
(Azure traces) matches nothing and adds its prompt length to the tree size, so the fallback balances
routed tokens.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from schedgym.baselines._routing import Router, outstanding
from schedgym.envs.serving.sim import ClusterSim


class CacheAware(Router):
    """Prefix match with a load-imbalance fallback (see the module docstring)."""

    name = "cache_aware"

    def __init__(self, cache_threshold: float = 0.3, balance_abs_threshold: float = 64.0,
                 balance_rel_threshold: float = 1.5) -> None:
        super().__init__()
        if not 0 <= cache_threshold <= 1:
            raise ValueError(f"cache_threshold must be in [0, 1], got {cache_threshold}")
        self.cache_threshold = float(cache_threshold)
        self.balance_abs = float(balance_abs_threshold)
        self.balance_rel = float(balance_rel_threshold)

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        n = len(self.state.engines)  # type: ignore[union-attr]
        self.trees: list[dict[int, dict]] = [{} for _ in range(n)]
        self.tree_size = np.zeros(n)

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        load = outstanding(state)
        hashes = state.workload.hashes(request).tolist()
        lv = load[valid]
        if lv.max() - lv.min() > self.balance_abs and lv.max() > self.balance_rel * lv.min():
            pick = self.argmin(valid, load)
        else:
            match = np.array([self._match(self.trees[i], hashes) for i in range(len(self.trees))], float)
            rate = match / len(hashes) if hashes else np.zeros(len(self.trees))
            if hashes and rate[valid].max() >= self.cache_threshold:
                pick = self.argmin(valid, -rate)
            else:
                pick = self.argmin(valid, self.tree_size)
        self._insert(pick, hashes, state.prompt[request])
        return pick

    @staticmethod
    def _match(tree: dict[int, dict], hashes: list[int]) -> int:
        node, n = tree, 0
        for h in hashes:
            node = node.get(h)  # type: ignore[assignment]
            if node is None:
                break
            n += 1
        return n

    def _insert(self, worker: int, hashes: list[int], prompt_tokens: int) -> None:
        if not hashes:
            self.tree_size[worker] += prompt_tokens
            return
        node = self.trees[worker]
        for h in hashes:
            child = node.get(h)
            if child is None:
                child = node[h] = {}
                self.tree_size[worker] += 1
            node = child
