"""Waiting-queue order of an engine, shared by the simulator (``sim.Engine``) and the live engine
(``hwbackend.engine.LiveEngine``) so both admit in the same order.

``EngineConfig.queue_policy``:

- ``"fcfs"``: first come, first served (vLLM's default);
- ``"edf"``: earliest workflow deadline first (HEXGEN-Text2SQL's urgency-guided queueing; requests without a
  workflow have an infinite deadline, so they keep FCFS order behind every workflow stage);
- ``"priority"``: lower priority class first (class 0 is the high-priority class, as in Llumnix's scheduling
  priority and vLLM's ``scheduling_policy="priority"``), FCFS within a class.

A request is inserted behind every queued request whose key is not larger (stable: equal keys keep arrival
order); a recompute-preempted request goes back to the head of the queue in every policy (vLLM v0).
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import TypeVar

QUEUE_POLICIES = ("fcfs", "edf", "priority")

T = TypeVar("T")


def queue_key(policy: str, deadline: float, priority: int) -> float:
    """Sort key of one request under ``policy`` (lower is admitted first; FCFS among equal keys)."""
    if policy == "fcfs":
        return 0.0
    if policy == "edf":
        return float(deadline)
    if policy == "priority":
        return float(priority)
    raise ValueError(f"queue_policy={policy!r}: expected one of {list(QUEUE_POLICIES)}")


def insert_ordered(queue: MutableSequence[T], item: T, key: float, key_of: Callable[[T], float]) -> None:
    """Insert ``item`` behind the last queued entry whose key is <= ``key`` (scans from the tail: O(1) when
    arrivals come in key order)."""
    i = len(queue)
    while i > 0 and key_of(queue[i - 1]) > key:
        i -= 1
    queue.insert(i, item)
