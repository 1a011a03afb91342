"""Workflow stages on the live engines (``LLMServingLive-v0``): the driver releases a stage when its parents have
really finished on the engines, as ``ClusterSim`` releases it when they finish in simulation (both keep the
release order with ``workflows.StageReleaser``).

A stage's arrival becomes its release time, ``max(trace arrival, last parent's finish)``, with the finish time
the engine logged (the validator's definition); the driver notices a finish at its next poll (every
``POLL_S``), so that detection delay is part of the stage's measured TTFT, as in a real workflow runtime.
A stage of a rejected parent is rejected in turn. Deadlines are absolute on the episode clock (workflow
arrival + ``deadline_s``) and go with each stage to its engine for the ``queue_policy="edf"`` order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from schedgym.envs.serving.workflows import StageReleaser

POLL_S = 0.002  # driver poll interval while it waits for a stage to be released


def next_stage(run: Any, stages: StageReleaser, feasible: np.ndarray, clock: Callable[[], float],
               poll: Callable[[], None]) -> int | None:
    """Wait in real time for the next released, servable stage (polling the engines so that finishes release
    children); rejected ones are recorded on the way. ``None`` when every stage is settled."""
    R = len(run.routed)
    while len(run.rejected) + int((run.routed >= 0).sum()) < R:  # stages neither routed nor rejected remain
        poll()
        r = stages.pop(clock())
        if r is None:
            if not stages.ready and not ((run.routed >= 0) & np.isnan(run.finish)).any():
                raise RuntimeError(f"workflow stages wait for parents that can never finish "
                                   f"({R - len(run.rejected) - int((run.routed >= 0).sum())} unsettled, none running)")
            time.sleep(min(max(stages.next_release() - clock(), 0.0), POLL_S))
            continue
        run.next_req = r
        if feasible[r] and not stages.doomed[r]:
            return r
        run.rejected.append(r)
        stages.reject(r)
    return None
