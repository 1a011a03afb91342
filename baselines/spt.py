"""Shortest Processing Time: dispatch the job whose next operation is shortest.

Source: S. S. Panwalkar and W. Iskander, "A survey of scheduling rules", Operations Research 25(1):45-61, 1977.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._dispatching import DispatchingRule
from schedgym.envs.jobshop.sim import JobShopState


class Spt(DispatchingRule):
    """Shortest Processing Time: dispatch the job whose next operation is shortest."""

    name = "spt"

    def priority(self, state: JobShopState, jobs: np.ndarray) -> np.ndarray:
        return -state.next_durations()[jobs]
