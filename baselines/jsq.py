"""Join the shortest queue / least outstanding requests (LOR): the instance with the fewest requests
waiting, running or swapped out.

Source: Vidur's ``lor`` global scheduler (Agrawal et al., MLSys 2024); JSQ: Winston, "Optimality of the
shortest line discipline", J. Applied Probability 14(1), 1977.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._routing import Router, outstanding
from schedgym.envs.serving.sim import ClusterSim


class Jsq(Router):
    """Fewest outstanding requests (random among ties)."""

    name = "jsq"

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        return self.argmin(valid, outstanding(state))
