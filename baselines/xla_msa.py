"""XLA memory-space assignment, greedy: buffers by benefit / sqrt(size), best-fit offsets.

Every buffer whose benefit (time saved by it alone in fast memory, from the roofline cost model) is
positive is tried in decreasing benefit / sqrt(size) order and put in fast memory at the best-fitting
gap (XLA's heap simulator) when one exists within the capacity. MemoryMapping-v0's default visit order and
fitting rule are exactly these, so in the default env this policy reproduces the heuristic decision by
decision. Prefetch/eviction timing and repacking of the real pass are not modelled (nor is the env).

Source: openxla/xla, xla/service/memory_space_assignment/ (MemorySpaceAssignment,
MemoryBoundednessBufferIntervalCompare);
the game against it: A. Wang et al., "Optimizing Memory Mapping Using Deep Reinforcement Learning"
(mallocMuZero), arXiv 2305.07440, 2023.
"""

from __future__ import annotations

from schedgym.baselines._memory import MAPPING, GreedyAllocator


class XlaMsa(GreedyAllocator):
    """Benefit / sqrt(size) order, best fit, positive-benefit buffers only."""

    name = "xla_msa"
    env_ids = (MAPPING,)
    order_name = "priority"
    rule = "best"
