"""Taillard-style random job-shop instances: every job visits every machine once, in random order."""

from __future__ import annotations

import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance


def random_instance(
    rng: np.random.Generator, n_jobs: int, n_machines: int, low: int = 1, high: int = 99, name: str | None = None
) -> JobShopInstance:
    """Durations uniform on [low, high]; machine orders are independent random permutations.

    Source: E. Taillard, "Benchmarks for basic scheduling problems", EJOR 64(2):278-285, 1993.
    """
    if n_jobs < 1 or n_machines < 1:
        raise ValueError(f"n_jobs and n_machines must be >= 1, got {n_jobs}x{n_machines}")
    if not 0 <= low <= high:
        raise ValueError(f"durations need 0 <= low <= high, got low={low} high={high}")
    durations = rng.integers(low, high + 1, size=(n_jobs, n_machines))
    machines = np.argsort(rng.random((n_jobs, n_machines)), axis=1)
    return JobShopInstance(name or f"random-{n_jobs}x{n_machines}", machines, durations, n_machines)
