"""Least Operations Remaining: dispatch the job with the fewest unscheduled operations.

Source: S. S. Panwalkar and W. Iskander, "A survey of scheduling rules", Operations Research 25(1):45-61, 1977.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._dispatching import DispatchingRule
from schedgym.envs.jobshop.sim import JobShopState


class Lor(DispatchingRule):
    """Least Operations Remaining: dispatch the job with the fewest unscheduled operations."""

    name = "lor"

    def priority(self, state: JobShopState, jobs: np.ndarray) -> np.ndarray:
        return -(state.n_ops - state.next_op[jobs])
