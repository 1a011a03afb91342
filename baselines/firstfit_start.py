"""First fit by start time: buffers in order of their live-range start, each in the lowest gap that holds it.

The classic online storage allocator applied offline (interval order = arrival order); MemoryMapping
semantics as in ``_memory.GreedyAllocator``.

Source: D. E. Knuth, The Art of Computer Programming Vol. 1, Sec. 2.5 (first-fit allocation); H. A. Kierstead,
"A polynomial time approximation algorithm for dynamic storage allocation", Discrete Math. 88:231-237, 1991.
"""

from __future__ import annotations

from schedgym.baselines._memory import MAPPING, OFFSETS, GreedyAllocator


class FirstFitStart(GreedyAllocator):
    """Start-time order (ties: larger first), first fit."""

    name = "firstfit_start"
    env_ids = (OFFSETS, MAPPING)
    order_name = "start"
    rule = "first"
