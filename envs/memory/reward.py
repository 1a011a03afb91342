"""Memory rewards.

MemoryMapping: the time a decision saves relative to the current mapping, divided by the all-slow
execution time; the episode return is (all-slow time - final time) / all-slow time, the total saving as a
fraction (multiply by ``info["all_slow_time"]`` for nanoseconds). Slow placements earn 0.

MemoryOffsets: minus the increase of the peak address, divided by the capacity; the episode return is
-peak / capacity, so a return >= -1 means the packing fits.
"""

from __future__ import annotations


def saving_reward(saved_ns: float, all_slow_ns: float) -> float:
    """Reward of one tier decision."""
    return saved_ns / all_slow_ns if all_slow_ns > 0 else 0.0


def peak_reward(previous_peak: int, new_peak: int, capacity: int) -> float:
    """Reward of one offset decision."""
    return -(new_peak - previous_peak) / capacity
