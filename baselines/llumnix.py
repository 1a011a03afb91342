"""Llumnix-style load-aware dispatch: the instance with the most "freeness", i.e. free KV blocks left after
the waiting requests' prompts, per request (an estimate of the decode steps it can still take).

Source: B. Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving", OSDI 2024;
``llumnix/load_computation.py``: remaining_steps = (available blocks - blocks wanted by waiting requests)
/ (running + waiting requests); dispatch policy ``load`` picks the least loaded (most free) instance. An idle
instance has infinite freeness. Migration is a simulator option (``migration="llumnix"``, ``migration.py``):
run this dispatcher with it on for the full Llumnix policy.
"""

from __future__ import annotations

import numpy as np

from schedgym.baselines._routing import PENDING_TOKENS, RUNNING, SWAPPED, USED_BLOCKS, WAITING, Router
from schedgym.envs.serving.sim import ClusterSim


def freeness(state: ClusterSim) -> np.ndarray:
    """Llumnix's remaining steps per instance (inf for an idle instance)."""
    stats = state.live_stats()
    total = np.array([e.total_blocks for e in state.engines], float)
    bs = state.cluster.engine.block_size
    free = total - stats[:, USED_BLOCKS] - np.ceil(stats[:, PENDING_TOKENS] / bs)
    n = stats[:, WAITING] + stats[:, RUNNING] + stats[:, SWAPPED]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, free / np.maximum(n, 1), np.inf)


class Llumnix(Router):
    """Most freeness (random among ties)."""

    name = "llumnix"

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        return self.argmin(valid, -freeness(state))
