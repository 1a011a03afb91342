"""TFLite Micro's greedy memory planner: largest buffer first, lowest gap that holds it (first fit).

Same order as TFLite's arena planner (``tflite_bestfit``) with first fit instead of best fit; MemoryMapping
semantics as in ``_memory.GreedyAllocator``.

Source: tensorflow/tflite-micro, tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc; see also
Y. Pisarchyk and J. Lee, arXiv 2001.03288, 2020.
"""

from __future__ import annotations

from schedgym.baselines._memory import MAPPING, OFFSETS, GreedyAllocator


class TflmFirstFit(GreedyAllocator):
    """Size-descending order, first fit."""

    name = "tflm_firstfit"
    env_ids = (OFFSETS, MAPPING)
    order_name = "size"
    rule = "first"
