"""First In First Out: dispatch the job that has waited longest (earliest ready time).

Source: S. S. Panwalkar and W. Iskander, "A survey of scheduling rules", Operations Research 25(1):45-61, 1977.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._dispatching import DispatchingRule
from schedgym.envs.jobshop.sim import JobShopState


class Fifo(DispatchingRule):
    """First In First Out: dispatch the job that has waited longest (earliest ready time)."""

    name = "fifo"

    def priority(self, state: JobShopState, jobs: np.ndarray) -> np.ndarray:
        return -state.job_ready[jobs]
