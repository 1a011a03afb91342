"""A tiny synthetic padded-graph env for the agent tests: pick the node with the highest value.

Each episode has 3..6 real nodes (of ``N_MAX = 6`` slots) on a chain, node features
``[value, picked, index parity]``; the agent picks ``PICKS = 3`` unpicked nodes one at a time and earns 1
each time it picks the highest-valued unpicked node. A random masked policy earns about 1.2; the optimum is 3.

``layout`` exercises the three ways the agents map actions to the graph:

- ``"node"``        — no ``action_node``, A == N: action i = node i,
- ``"action_node"`` — ``action_node`` is a per-episode permutation: action a = node ``perm[a]``,
- ``"graph"``       — no ``action_node``, A = 2 != N: action 0 = "highest value lies on an even node",
  action 1 = "on an odd node"; reward 1 for the right answer, one decision per episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from schedgym.graph import GraphSpec

N_MAX, E_MAX, PICKS = 6, 10, 3
ENV_IDS = {"node": "schedgym_test/PickMax-v0", "action_node": "schedgym_test/PickMaxPerm-v0",
           "graph": "schedgym_test/PickMaxParity-v0"}


class PickMaxEnv(gym.Env[dict[str, np.ndarray], Any]):
    metadata = {"render_modes": []}

    def __init__(self, config: dict[str, Any] | None = None, *, layout: str = "node") -> None:
        layout = dict(config or {}).get("layout", layout)
        if layout not in ENV_IDS:
            raise ValueError(f"layout must be one of {sorted(ENV_IDS)}, got {layout!r}")
        self.layout = layout
        n_actions = 2 if layout == "graph" else N_MAX
        self.spec_ = GraphSpec(N_MAX, E_MAX, 3, 1, n_actions, action_node=layout == "action_node")
        self.observation_space = self.spec_.space(-10.0, 10.0)
        self.action_space = spaces.Discrete(n_actions)
        self._buf = self.spec_.zeros()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        b = self._buf
        for v in b.values():
            v.fill(0)
        self.n = int(self.np_random.integers(3, N_MAX + 1))
        self.values = self.np_random.random(self.n).astype(np.float32)
        self.picked = np.zeros(self.n, bool)
        self.t = 0
        b["node_features"][: self.n, 0] = self.values
        b["node_features"][: self.n, 2] = np.arange(self.n) % 2
        b["node_mask"][: self.n] = 1
        e = np.arange(self.n - 1)
        b["edge_index"][0, e], b["edge_index"][1, e] = e, e + 1
        b["edge_features"][e, 0] = 1.0
        b["edge_mask"][e] = 1
        if self.layout == "action_node":
            self.perm = self.np_random.permutation(N_MAX)
            b["action_node"][:] = self.perm
        self._update_mask()
        return self._obs(), {"action_mask": b["action_mask"].copy()}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        a = int(action)
        if not self._buf["action_mask"][a]:
            raise ValueError(f"action {a} is masked out")
        best = int(np.argmax(np.where(self.picked, -1.0, self.values)))
        if self.layout == "graph":
            reward = float(a == best % 2)
            self.t = PICKS
        else:
            node = int(self.perm[a]) if self.layout == "action_node" else a
            reward = float(node == best)
            self.picked[node] = True
            self._buf["node_features"][node, 1] = 1.0
            self.t += 1
        terminated = self.t >= PICKS
        self._update_mask()
        return self._obs(), reward, terminated, False, {"action_mask": self._buf["action_mask"].copy()}

    def action_masks(self) -> np.ndarray:
        return self._buf["action_mask"].astype(bool)

    def _update_mask(self) -> None:
        m = self._buf["action_mask"]
        if self.layout == "graph":
            m[:] = 1
            return
        free = np.zeros(N_MAX, np.int8)
        free[: self.n] = ~self.picked
        m[:] = free[self.perm] if self.layout == "action_node" else free

    def _obs(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._buf.items()}


def register() -> None:
    """Register the three layouts with Gymnasium (idempotent; in-process only)."""
    for layout, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=PickMaxEnv, kwargs={"layout": layout})
