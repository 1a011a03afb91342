"""Shared workloads for the live-backend tests."""

from __future__ import annotations

import numpy as np

from schedgym.envs.serving.types import ServingWorkload


def small_workload(n: int = 12) -> ServingWorkload:
    rng = np.random.default_rng(3)
    return ServingWorkload("small", np.sort(rng.uniform(0, 0.3, n)), rng.integers(4, 60, n), rng.integers(2, 20, n))
