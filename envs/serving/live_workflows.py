"""Workflow stages on the live engines (``LLMServingLive-v0``): the driver releases a stage when its parents have
really finished on the engines, as ``ClusterSim`` releases it when they finish in simulation.

A stage's arrival becomes its release time, ``max(trace arrival, last parent's finish)``, with the finish time
the engine logged (the validator's definition); the driver notices a finish at its next poll (every
``POLL_S``), so that detection delay is part of the stage's measured TTFT, as in a real workflow runtime.
A stage of a rejected parent is rejected in turn. Deadlines are absolute on the episode clock (workflow
arrival + ``deadline_s``) and go with each stage to its engine for the ``queue_policy="edf"`` order.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from schedgym.envs.serving.types import ServingWorkload

POLL_S = 0.002  # driver poll interval while it waits for a stage to be released


def stage_deadlines(w: ServingWorkload) -> np.ndarray:
    """(R,) absolute deadline of every request's workflow (inf without workflows), as ``ClusterSim.deadline``."""
    if w.workflows is None:
        return np.full(w.n_requests, np.inf)
    wf = w.workflows
    return (wf.workflow_arrival(w.arrival) + wf.deadline_s)[wf.workflow]


class StageReleaser:
    """Which stages are released, in release order. ``arrival`` (the run's per-request arrival array) is updated
    in place with each stage's release time."""

    def __init__(self, w: ServingWorkload, arrival: np.ndarray) -> None:
        if w.workflows is None:
            raise ValueError(f"workload {w.name} has no workflows")
        self.arrival = arrival
        self.children = w.workflows.children()
        self.n_parents: list[int] = np.diff(w.workflows.parent_offsets).tolist()
        self.doomed = [False] * w.n_requests  # a parent was rejected
        self.ready = [(float(arrival[r]), r) for r in range(w.n_requests) if not self.n_parents[r]]
        heapq.heapify(self.ready)
        self.unsettled = w.n_requests  # stages neither routed nor rejected yet

    def finished(self, r: int, t: float) -> None:
        """Stage ``r`` finished at ``t`` (engine clock): its children lose a parent to wait for."""
        for c in self.children[r]:
            self._release(c, t)

    def _release(self, c: int, t: float) -> None:
        self.n_parents[c] -= 1
        if self.n_parents[c] == 0:
            self.arrival[c] = max(float(self.arrival[c]), t)
            heapq.heappush(self.ready, (float(self.arrival[c]), c))

    def pop(self, now: float) -> int | None:
        """The earliest released stage whose release time has come, if any."""
        if self.ready and self.ready[0][0] <= now:
            return heapq.heappop(self.ready)[1]
        return None

    def next_release(self) -> float:
        return self.ready[0][0] if self.ready else math.inf

    def settle(self, r: int, rejected: bool) -> None:
        """Stage ``r`` is routed, or rejected (its descendants are then rejected when released)."""
        self.unsettled -= 1
        if rejected:
            for c in self.children[r]:
                self.doomed[c] = True
                self._release(c, float(self.arrival[r]))


def next_stage(run: Any, stages: StageReleaser, feasible: np.ndarray, clock: Callable[[], float],
               poll: Callable[[], None]) -> int | None:
    """Wait in real time for the next released, servable stage (polling the engines so that finishes release
    children); rejected ones are recorded on the way. ``None`` when every stage is settled."""
    while stages.unsettled:
        poll()
        r = stages.pop(clock())
        if r is None:
            if not stages.ready and not ((run.routed >= 0) & np.isnan(run.finish)).any():
                raise RuntimeError(f"workflow stages wait for parents that can never finish "
                                   f"({stages.unsettled} unsettled, none running)")
            time.sleep(min(max(stages.next_release() - clock(), 0.0), POLL_S))
            continue
        run.next_req = r
        if feasible[r] and not stages.doomed[r]:
            stages.settle(r, rejected=False)
            return r
        run.rejected.append(r)
        stages.settle(r, rejected=True)
    return None
