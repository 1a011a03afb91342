"""Least Work Remaining: dispatch the job with the least unscheduled processing time.

Source: S. S. Panwalkar and W. Iskander, "A survey of scheduling rules", Operations Research 25(1):45-61, 1977.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._dispatching import DispatchingRule
from schedgym.envs.jobshop.sim import JobShopState


class Lwkr(DispatchingRule):
    """Least Work Remaining: dispatch the job with the least unscheduled processing time."""

    name = "lwkr"

    def priority(self, state: JobShopState, jobs: np.ndarray) -> np.ndarray:
        return -state.remaining_work[jobs]
