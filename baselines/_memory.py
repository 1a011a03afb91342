"""Shared machinery of the memory baselines: plan a whole solution at ``reset``, then replay it as actions.

MemoryOffsets: a planner returns an offset per buffer; the replay places buffers in increasing order of
those offsets, each at its skyline offset, which reproduces any packing whose buffers rest on 0 or on
another buffer (every greedy and canonical-search packing) and lowers any other (``sim`` docstring). In
the env's ``action_mode="offset"`` the env fixes the order; the replay picks the planned offset when it is
a candidate and the lowest candidate otherwise (``info['deviations']`` counts those).

MemoryMapping: a planner returns the set of buffers it puts in fast memory (and their offsets); the env
visits buffers in its own order and fits offsets with its own rule, so the replay answers "fast" for a
planned buffer when the env can fit it and "slow" otherwise. ``info['planned_fast']`` and
``info['dropped']`` (planned but not fittable in the env's order) report the difference.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.memory.sim import CostModel, MappingState, OffsetState, OrderedOffsetState, pack
from schedgym.envs.memory.types import MemoryProgram, OffsetInstance

MAPPING = "schedgym/MemoryMapping-v0"
OFFSETS = "schedgym/MemoryOffsets-v0"


def size_order(lower: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Size descending, ties by earlier first use, then index (TFLite's ArenaPlanner order)."""
    return np.lexsort((np.arange(size.size), lower, -size))


def start_order(lower: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Live-range start ascending, ties by larger size, then index."""
    return np.lexsort((np.arange(size.size), -size, lower))


GREEDY_RULES = {
    "tflite_bestfit": (size_order, "best"),
    "tflm_firstfit": (size_order, "first"),
    "firstfit_start": (start_order, "first"),
}


def greedy_offsets(instance: OffsetInstance) -> tuple[np.ndarray, str]:
    """The lowest-peak packing among the greedy rules, and the rule's name."""
    best: tuple[int, np.ndarray, str] | None = None
    for rule_name, (order_fn, rule) in GREEDY_RULES.items():
        off = pack(
            instance.lower, instance.upper, instance.size, order_fn(instance.lower, instance.size), rule
        )
        peak = int((off + instance.size).max())
        if best is None or peak < best[0]:
            best = (peak, off, rule_name)
    assert best is not None
    return best[1], best[2]


class MemoryPlanner:
    """Base class: subclasses implement ``plan_offsets`` (MemoryOffsets) and/or ``plan_mapping``."""

    name = "planner"
    env_ids: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self._queue: list[int] = []
        self._pos = 0
        self._fast: np.ndarray | None = None
        self._planned_offset: np.ndarray | None = None
        self._env: Any = None

    @property
    def planned_mapping(self) -> tuple[np.ndarray, np.ndarray]:
        """MemoryMapping: the planner's own (fast mask, offsets), before the env's replay."""
        if self._fast is None or self._planned_offset is None:
            raise RuntimeError(f"{self.name}: no mapping planned; reset(env) on MemoryMapping first")
        return self._fast.copy(), self._planned_offset.copy()

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        base = env.unwrapped
        state = base.state  # type: ignore[attr-defined]
        self.info = {}
        self._env = base
        self._pos = 0
        if isinstance(state, (OffsetState, OrderedOffsetState)):
            inst = state.instance
            offsets = np.asarray(self.plan_offsets(inst), np.int64)
            if offsets.shape != (inst.n_buffers,) or (offsets < 0).any():
                raise RuntimeError(
                    f"{self.name}: planner returned no complete offset assignment for {inst.name}"
                )
            self.info["planned_peak"] = int((offsets + inst.size).max())
            self._planned_offset = offsets
            self._queue = np.lexsort((np.arange(offsets.size), offsets)).tolist()
            if isinstance(state, OrderedOffsetState):
                self.info["deviations"] = 0
        elif isinstance(state, MappingState):
            fast, offsets = self.plan_mapping(state.program, state.cost)
            self._fast = np.asarray(fast, bool)
            self._planned_offset = np.asarray(offsets, np.int64)
            self.info["planned_fast"] = int(self._fast.sum())
            self.info["dropped"] = 0
        else:
            raise TypeError(f"{self.name}: unsupported env state {type(state).__name__}")

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self._env is None:
            raise RuntimeError(f"{self.name}: call reset(env) before act()")
        state = self._env.state
        if isinstance(state, OffsetState):
            if self._pos >= len(self._queue):
                raise RuntimeError(f"{self.name}: more decisions asked than buffers planned; call reset(env)")
            a = self._queue[self._pos]
            self._pos += 1
            return a
        if isinstance(state, OrderedOffsetState):
            # The env's order and candidates: the planned offset when it is a candidate, else the lowest.
            cands = self._env.candidates()
            want = int(self._planned_offset[state.current])
            if want in cands:
                return cands.index(want)
            self.info["deviations"] += 1
            return 0
        assert self._fast is not None and self._planned_offset is not None
        b = state.current
        slow = self._env.slow_action
        if not self._fast[b]:
            return slow
        cands = self._env.candidates()
        if not cands:
            self.info["dropped"] += 1
            return slow
        want = int(self._planned_offset[b])
        return cands.index(want) if want in cands and len(cands) > 1 else 0

    def plan_offsets(self, instance: OffsetInstance) -> np.ndarray:
        raise TypeError(f"{self.name} does not support MemoryOffsets")

    def plan_mapping(self, program: MemoryProgram, cost: CostModel) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError(f"{self.name} does not support MemoryMapping")


class GreedyAllocator(MemoryPlanner):
    """A greedy allocator = an order (``order_name``: 'size', 'start' or 'priority') + a fitting ``rule``.

    MemoryOffsets: every buffer, unbounded memory: the peak it reaches is the capacity it needs.
    MemoryMapping: buffers with a positive benefit (time saved alone in fast memory), in the same order,
    go to fast memory when the rule finds room within the fast capacity.
    """

    order_name = "size"
    rule = "best"

    def _order(self, lower: np.ndarray, size: np.ndarray, cost: CostModel | None = None) -> np.ndarray:
        if self.order_name == "size":
            return size_order(lower, size)
        if self.order_name == "start":
            return start_order(lower, size)
        if cost is None:
            raise TypeError(f"{self.name} orders buffers by benefit, which only programs have")
        return cost.order("priority")

    def plan_offsets(self, instance: OffsetInstance) -> np.ndarray:
        return pack(
            instance.lower,
            instance.upper,
            instance.size,
            self._order(instance.lower, instance.size),
            self.rule,
        )

    def plan_mapping(self, program: MemoryProgram, cost: CostModel) -> tuple[np.ndarray, np.ndarray]:
        order = self._order(program.buffer_lower, program.buffer_size, cost)
        order = order[cost.benefit[order] > 0]
        off = pack(
            program.buffer_lower,
            program.buffer_upper,
            program.buffer_size,
            order,
            self.rule,
            program.spec.fast_capacity,
        )
        return off >= 0, off
