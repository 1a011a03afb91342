"""The one event engine every simulator uses: a heap of (time, priority, seq, event).

``seq`` is a per-queue counter, so events at the same time and priority pop in insertion order and two
queues never share state (no class-level counters). A plain int is used instead of ``itertools.count``
so queues pickle and deep-copy on every Python version.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

E = TypeVar("E")


class EventQueue(Generic[E]):
    """Min-heap of timed events with a monotone clock ``now``."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, E]] = []
        self._seq = 0
        self.now = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time: float, event: E, priority: int = 0) -> None:
        """Schedule ``event`` at ``time``; lower ``priority`` pops first among equal times."""
        if time < self.now:
            raise ValueError(f"event time {time} is before the current time {self.now}")
        heapq.heappush(self._heap, (time, priority, self._seq, event))
        self._seq += 1

    def peek_time(self) -> float:
        """Time of the next event (``inf`` when empty)."""
        return self._heap[0][0] if self._heap else float("inf")

    def pop(self) -> tuple[float, E]:
        """Remove the next event, advance ``now`` to its time and return ``(time, event)``."""
        if not self._heap:
            raise IndexError("pop from an empty EventQueue")
        time, _, _, event = heapq.heappop(self._heap)
        self.now = time
        return time, event

    def pop_until(self, time: float) -> list[tuple[float, E]]:
        """Pop every event with time <= ``time`` in order, then set ``now = time``."""
        out = []
        while self._heap and self._heap[0][0] <= time:
            out.append(self.pop())
        self.now = max(self.now, time)
        return out

    def clear(self) -> None:
        """Drop all events and rewind the clock (the sequence counter restarts too)."""
        self._heap.clear()
        self._seq = 0
        self.now = 0.0
