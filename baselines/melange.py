"""Mélange's provisioning: the cheapest GPU allocation (a count per type) whose simulated serving episode meets
the SLO-attainment target, found by evaluating allocations in increasing cost (``serving/provisioning.py``
``solve``), then played as actions of ``schedgym/Provisioning-v0``; if no allocation within the caps meets the
target, every offered type at its cap.

Source: T. Griggs et al., "Mélange: Cost Efficient Large Language Model Serving by Exploiting GPU
Heterogeneity", arXiv:2404.14527 (2024): choose the cost-minimal multiset of GPU types that meets the SLO
for the workload's request-size mix (there an ILP over profiled per-type throughputs; here an exact search
over simulated and validated allocations).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.provisioning.types import GPU_SLOTS
from schedgym.envs.serving.provisioning import solve


class Melange:
    """Cheapest allocation meeting the target, added one GPU at a time, then provisioned."""

    name = "melange"
    env_ids = ("schedgym/Provisioning-v0",)

    def __init__(self) -> None:
        self.env: Any = None
        self._todo: list[int] = []

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.env = env.unwrapped
        p = self.env.instance
        res = solve(p)
        counts = res.best["counts"] if res.best is not None else (p.max_per_type,) * len(p.gpus)
        self._todo = [GPU_SLOTS.index(g) for g, n in zip(p.gpus, counts, strict=True) for _ in range(n)]

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.env is None:
            raise RuntimeError("melange: call reset(env) before act()")
        mask = np.asarray(info["action_mask"])
        while self._todo:
            a = self._todo.pop(0)
            if mask[a]:
                return a
            raise RuntimeError(f"melange: planned GPU type {GPU_SLOTS[a]} is masked out")
        return len(GPU_SLOTS)
