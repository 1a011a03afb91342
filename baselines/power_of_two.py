"""Power of two choices: sample two valid instances at random, send the request to the one with fewer
outstanding requests.

Source: M. Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", IEEE TPDS 12(10):
1094-1104, 2001.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._routing import Router, outstanding
from schedgym.envs.serving.sim import ClusterSim


class PowerOfTwo(Router):
    """The less loaded (fewer outstanding requests) of two random valid instances."""

    name = "power_of_two"

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        if valid.size == 1:
            return int(valid[0])
        pair = self.rng.choice(valid, size=2, replace=False)
        return self.argmin(pair, outstanding(state))
