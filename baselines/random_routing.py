"""Uniformly random routing among the instances that can hold the request (seeded per episode).

Source: Vidur's ``random`` global scheduler (Agrawal et al., MLSys 2024); the power-of-d analysis of
Mitzenmacher ("The Power of Two Choices in Randomized Load Balancing", IEEE TPDS 12(10), 2001) uses it as
the d = 1 reference.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._routing import Router
from schedgym.envs.serving.sim import ClusterSim


class RandomRouting(Router):
    """A uniformly random valid instance."""

    name = "random"

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        return int(valid[self.rng.integers(valid.size)])
