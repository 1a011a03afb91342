"""TFLite's arena planner: greedy by size (largest first, ties by earlier first use), best-fit gap.

MemoryOffsets: every buffer, in that order, goes at the bottom of the smallest free gap over its live
range that holds it (or on top), so the peak it reaches is the capacity it needs. MemoryMapping: the
buffers with a positive benefit, in that order, go to fast memory when such a gap exists within the
capacity (the env replays this set in its own visit order; ``info['dropped']`` counts planned buffers the
env's fitting could not place).

Source: Y. Pisarchyk and J. Lee, "Efficient Memory Management for Deep Neural Net Inference",
arXiv 2001.03288, 2020 ("greedy by size"); tensorflow/lite/arena_planner.cc and simple_memory_arena.cc.
"""

from __future__ import annotations

from schedgym.baselines._memory import MAPPING, OFFSETS, GreedyAllocator


class TfliteBestFit(GreedyAllocator):
    """Size-descending order, best fit."""

    name = "tflite_bestfit"
    env_ids = (OFFSETS, MAPPING)
    order_name = "size"
    rule = "best"
