"""Deadline-aware (urgency-aware) routing of workflow stages: estimate when the stage would finish on each
instance from its queue and speed, send it to the earliest; a stage that cannot meet its workflow's deadline
anywhere is sent where it delays others least (the instance with the least estimated work queued per unit
of speed is kept for stages that still can).

Estimated finish on instance ``i``: prefill of the instance's pending prompt tokens plus this prompt (the
instance's cost model), then ``output_guess`` tokens at the instance's current decode step (or a lone
sequence's step when idle). Without workflows (no deadlines) it is earliest-estimated-finish routing.

Source: "HEXGEN-TEXT2SQL: Optimizing LLM Inference Request Scheduling for Agentic Text-to-SQL Workflow",
arXiv:2505.05286 (2025): urgency-aware dispatch of workflow stages to heterogeneous instances by their
estimated completion against the workflow's deadline (with local urgency-guided queueing, here the engine's
``queue_policy="edf"``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from schedgym.baselines._routing import DECODE_STEP, LIVE, PENDING_TOKENS, SERVING, Router
from schedgym.envs.serving.sim import ClusterSim


class DeadlineAware(Router):
    """Earliest estimated finish; hopeless stages (no instance meets the deadline) to the latest one."""

    name = "deadline_aware"
    env_ids = (SERVING, LIVE)  # reads each instance's cost model (the live env's: its calibration) and deadlines

    def __init__(self, output_guess: int = 128, shed_hopeless: bool = True) -> None:
        super().__init__()
        if output_guess < 1:
            raise ValueError(f"output_guess must be >= 1, got {output_guess}")
        self.output_guess = int(output_guess)
        self.shed_hopeless = bool(shed_hopeless)

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        super().reset(env, seed)
        if any(getattr(e, "cost", None) is None for e in self.state.engines):  # type: ignore[union-attr]
            raise ValueError(f"{self.name} needs every instance's cost model; on LLMServingLive-v0 pass "
                             "calibration=<table> (schedgym calibrate --model tiny --out cal.json)")

    def estimate(self, state: ClusterSim, request: int) -> np.ndarray:
        """(N,) estimated seconds until ``request`` would finish on each instance."""
        live = state.live_stats()
        p = state.prompt[request]
        est = np.empty(len(state.engines))
        for i, e in enumerate(state.engines):
            a, b = e.cost.decode_coefficients(1)
            step = max(float(live[i, DECODE_STEP]), a + b * p)
            est[i] = e.cost.prefill_time(int(live[i, PENDING_TOKENS]) + p) + self.output_guess * step
        return est

    def choose(self, state: ClusterSim, request: int, valid: np.ndarray) -> int:
        est = self.estimate(state, request)
        slack = state.deadline[request] - state.now
        if self.shed_hopeless and est[valid].min() > slack:
            return self.argmin(valid, -est)
        return self.argmin(valid, est)
