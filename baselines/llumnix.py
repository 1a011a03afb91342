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

from schedgym.baselines._routing import Router
from schedgym.envs.serving.migration import freeness
from schedgym.envs.serving.sim import ClusterSim


class Llumnix(Router):
    """Most freeness (random among ties); ``priority_headroom_blocks`` > 0 charges that much virtual KV usage to
    instances holding a high-priority (class 0) request when the SLO has several classes (Llumnix's headroom)."""

    name = "llumnix"

    def __init__(self, priority_headroom_blocks: float = 0.0) -> None:
        super().__init__()
        if not priority_headroom_blocks >= 0:
            raise ValueError(f"priority_headroom_blocks must be >= 0, got {priority_headroom_blocks}")
        self.headroom = float(priority_headroom_blocks)

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        return self.argmin(valid, -freeness(state, state.now, self.headroom))


class LlumnixPriority(Llumnix):
    """Llumnix dispatch with 64 blocks of high-priority headroom (class 0 is the high-priority class)."""

    name = "llumnix_priority"

    def __init__(self, priority_headroom_blocks: float = 64.0) -> None:
        super().__init__(priority_headroom_blocks)
