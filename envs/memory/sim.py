"""Memory dynamics, written once: address-space fitting, the skyline, the roofline cost model, and the two
game states built from them (``MappingState`` for MemoryMapping, ``OffsetState`` for MemoryOffsets).

Fitting (MemoryMapping). For a buffer ``b``, the *gaps* are the free address intervals of fast memory over
b's whole live range: [0, capacity) minus the addresses of placed buffers whose live ranges overlap b's.
A gap's bottom is 0 or the top of a placed buffer, so every placement below rests on something.

- ``best`` fit (XLA's heap simulator, TFLite's SimpleMemoryArena): the smallest gap that holds b; ties to the
  lowest address; b goes at the gap's bottom.
- ``first`` fit: the lowest gap that holds b, at its bottom.
- candidates: the bottoms of all gaps that hold b, in increasing address order (the agent picks one).

Skyline (MemoryOffsets, MiniMalloc's canonical placement). The time axis is cut into *sections* at every
live-range boundary; each section has a *floor*, the highest top of the placed buffers covering it. An
unplaced buffer's skyline offset is the maximum floor over its sections: placing it there never overlaps a
placed buffer. Placing every buffer of any feasible packing in increasing-offset order at its skyline offset
reproduces that packing or a lower one (Moffitt, MiniMalloc, ASPLOS'23: canonical solutions), so the
skyline game loses no solution.
"""

from __future__ import annotations

import numpy as np

from schedgym.envs.memory.types import MemoryProgram, OffsetInstance

FIT_RULES = ("best", "first")
ORDERS = ("priority", "size", "start")


class AddressSpace:
    """Rectangles (address x live range) placed so far in one memory of ``capacity`` bytes (None: unbounded).

    offset: (B,) int64 — address of each placed buffer, -1 if not placed
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray, size: np.ndarray, capacity: int | None) -> None:
        self.lower, self.upper, self.size = lower, upper, size
        self.capacity = capacity
        self.offset = np.full(size.size, -1, np.int64)
        self.placed = np.zeros(size.size, bool)

    def gaps(self, b: int) -> list[tuple[int, int]]:
        """Free [start, end) address intervals over b's live range (the last one ends at the capacity, or
        at a huge number when unbounded)."""
        ov = self.placed & (self.lower < self.upper[b]) & (self.upper > self.lower[b])
        idx = np.flatnonzero(ov)
        end_all = self.capacity if self.capacity is not None else np.iinfo(np.int64).max // 4
        if idx.size == 0:
            return [(0, end_all)]
        off = self.offset[idx]
        order = np.argsort(off, kind="stable")
        starts = off[order].tolist()
        ends = (off + self.size[idx])[order].tolist()
        out: list[tuple[int, int]] = []
        cur = 0
        for s, e in zip(starts, ends, strict=True):
            if s > cur:
                out.append((cur, s))
            if e > cur:
                cur = e
        if cur < end_all:
            out.append((cur, end_all))
        return out

    def candidates(self, b: int) -> list[int]:
        """Bottoms of the gaps that hold b, increasing."""
        need = int(self.size[b])
        return [s for s, e in self.gaps(b) if e - s >= need]

    def fit(self, b: int, rule: str) -> int:
        """Offset chosen by ``rule`` ('best' or 'first'), or -1 if no gap holds b."""
        need = int(self.size[b])
        best, best_len = -1, None
        for s, e in self.gaps(b):
            ln = e - s
            if ln < need:
                continue
            if rule == "first":
                return s
            if best_len is None or ln < best_len:
                best, best_len = s, ln
        return best

    def place(self, b: int, offset: int) -> None:
        self.offset[b] = offset
        self.placed[b] = True

    def peak(self) -> int:
        return int((self.offset + self.size)[self.placed].max(initial=0))


def pack(
    lower: np.ndarray,
    upper: np.ndarray,
    size: np.ndarray,
    order: np.ndarray,
    rule: str,
    capacity: int | None = None,
) -> np.ndarray:
    """Place buffers one by one in ``order`` with a fitting rule; (B,) offsets, -1 where nothing fits (only
    possible with a capacity). The greedy allocators (TFLite, first fit by start) are this with an order."""
    space = AddressSpace(lower, upper, size, capacity)
    for b in np.asarray(order).tolist():
        off = space.fit(b, rule)
        if off >= 0:
            space.place(b, off)
    return space.offset.copy()


class Sections:
    """The time axis cut at every live-range boundary.

    bounds: (S+1,) int64 — sorted distinct boundaries; section s is [bounds[s], bounds[s+1])
    first, last: (B,) int64 — buffer b covers sections first[b] .. last[b]-1
    """

    def __init__(self, lower: np.ndarray, upper: np.ndarray) -> None:
        self.bounds = np.unique(np.concatenate([lower, upper]))
        self.first = np.searchsorted(self.bounds, lower)
        self.last = np.searchsorted(self.bounds, upper)
        self.n = int(self.bounds.size - 1)

    def totals(self, size: np.ndarray) -> np.ndarray:
        """(S,) int64: total size of the buffers covering each section."""
        cover = np.zeros(self.n + 1, np.int64)
        np.add.at(cover, self.first, size)
        np.add.at(cover, self.last, -size)
        return np.cumsum(cover)[:-1]


class OffsetState:
    """The skyline game's state (public, read-only by convention; heuristics read it).

    floor:     (S,) int64 — highest top of the placed buffers covering each section
    remaining: (S,) int64 — total size of the unplaced buffers covering each section
    sky:       (B,) int64 — skyline offset of each buffer (max floor over its sections); for placed buffers,
               their offset at placement
    offset:    (B,) int64 — -1 while unplaced
    """

    def __init__(self, instance: OffsetInstance) -> None:
        self.instance = instance
        self.sections = sec = Sections(instance.lower, instance.upper)
        b = instance.n_buffers
        self.floor = np.zeros(sec.n, np.int64)
        self.remaining = sec.totals(instance.size)
        self.sky = np.zeros(b, np.int64)
        self.offset = np.full(b, -1, np.int64)
        self.placed = np.zeros(b, bool)
        self.peak = 0
        self.n_placed = 0

    @property
    def done(self) -> bool:
        return self.n_placed == self.instance.n_buffers

    def tops(self) -> np.ndarray:
        """(B,) int64: top (offset + size) each unplaced buffer would reach if placed now."""
        return self.sky + self.instance.size

    def place(self, b: int) -> tuple[int, int]:
        """Place buffer b at its skyline offset; return (offset, previous peak)."""
        if self.placed[b]:
            raise ValueError(f"buffer {b} is already placed")
        inst, sec = self.instance, self.sections
        off = int(self.sky[b])
        top = off + int(inst.size[b])
        lo, hi = int(sec.first[b]), int(sec.last[b])
        self.floor[lo:hi] = top
        self.remaining[lo:hi] -= inst.size[b]
        ov = ~self.placed & (inst.lower < inst.upper[b]) & (inst.upper > inst.lower[b])
        np.maximum(self.sky, np.where(ov, top, 0), out=self.sky)
        self.offset[b] = off
        self.placed[b] = True
        self.n_placed += 1
        prev = self.peak
        if top > prev:
            self.peak = top
        return off, prev


class OrderedOffsetState:
    """The offset game with a fixed visit order (MemoryOffsets' ``action_mode="offset"``): buffers come in
    ``order`` and each goes at an offset the agent picks among its candidates, the bottoms of the free gaps
    over its live range that hold it (0, or the top of a placed buffer it overlaps in time; memory is
    unbounded above, so the gap above everything always qualifies).

    offset, placed: (B,) — as in ``OffsetState``; floor, remaining: (S,) — per section, for observations
    """

    def __init__(self, instance: OffsetInstance, order: np.ndarray) -> None:
        self.instance = instance
        self.order = np.asarray(order, np.int64)
        self.sections = sec = Sections(instance.lower, instance.upper)
        self.space = AddressSpace(instance.lower, instance.upper, instance.size, None)
        self.offset, self.placed = self.space.offset, self.space.placed
        self.floor = np.zeros(sec.n, np.int64)
        self.remaining = sec.totals(instance.size)
        self.peak = 0
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= self.order.size

    @property
    def current(self) -> int:
        """The buffer being placed (-1 when done)."""
        return int(self.order[self.pos]) if self.pos < self.order.size else -1

    def candidates(self, k: int) -> list[tuple[int, int]]:
        """(offset, gap length) of the current buffer's candidates, increasing: the k - 1 lowest gaps that
        hold it and the gap above everything (the last)."""
        b = self.current
        need = int(self.instance.size[b])
        fits = [(s, e - s) for s, e in self.space.gaps(b) if e - s >= need]
        return fits if len(fits) <= k else fits[: k - 1] + fits[-1:]

    def place(self, offset: int) -> tuple[int, int]:
        """Place the current buffer at ``offset`` (assumed a candidate); return (offset, previous peak)."""
        b = self.current
        inst, sec = self.instance, self.sections
        top = offset + int(inst.size[b])
        lo, hi = int(sec.first[b]), int(sec.last[b])
        np.maximum(self.floor[lo:hi], top, out=self.floor[lo:hi])
        self.remaining[lo:hi] -= inst.size[b]
        self.space.place(b, offset)
        self.pos += 1
        prev = self.peak
        self.peak = max(prev, top)
        return offset, prev


class CostModel:
    """Precomputed roofline tables of a program (see ``validator`` for the formula).

    acc_op, acc_bytes: per buffer, the distinct ops that access it and the bytes it moves at each (size x
    number of accesses: 2 when the op both reads and writes it)
    """

    def __init__(self, program: MemoryProgram) -> None:
        self.program = program
        spec = program.spec
        self.inv_fast = 1.0 / spec.fast_bandwidth
        self.inv_slow = 1.0 / spec.slow_bandwidth
        n, b = program.n_ops, program.n_buffers
        key, counts = np.unique(program.access_buffer * n + program.access_op, return_counts=True)
        kb, ko = key // n, key % n
        byts = program.buffer_size[kb] * counts
        split = np.searchsorted(kb, np.arange(1, b))
        self.acc_op = np.split(ko, split)
        self.acc_bytes = np.split(byts, split)
        self.slow_bytes0 = np.zeros(n, np.int64)
        np.add.at(self.slow_bytes0, ko, byts)
        self.all_slow_times = self.times(np.zeros(n, np.int64), self.slow_bytes0)
        self.all_slow = float(self.all_slow_times.sum())
        self.all_fast = float(self.times(self.slow_bytes0, np.zeros(n, np.int64)).sum())
        self.benefit = self._benefit()

    def times(
        self, fast_bytes: np.ndarray, slow_bytes: np.ndarray, ops: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-op time; with ``ops`` only for those ops. Same expression as the validator, bit for bit."""
        spec = self.program.spec
        comp = self.program.op_compute if ops is None else self.program.op_compute[ops]
        return np.maximum(comp, fast_bytes / spec.fast_bandwidth + slow_bytes / spec.slow_bandwidth)

    def _benefit(self) -> np.ndarray:
        """(B,) time saved by moving one buffer alone to fast memory, everything else slow (XLA's benefit)."""
        out = np.zeros(self.program.n_buffers)
        for b, (ops, byts) in enumerate(zip(self.acc_op, self.acc_bytes, strict=True)):
            if ops.size:
                slow = self.slow_bytes0[ops]
                after = self.times(byts, slow - byts, ops)
                out[b] = float((self.all_slow_times[ops] - after).sum())
        return np.maximum(out, 0.0)

    def order(self, kind: str) -> np.ndarray:
        """Visit order of the buffers: 'priority' = XLA's benefit / sqrt(size) descending (ties: earlier
        start, then index); 'size' = size descending (ties: earlier start; TFLite); 'start' = live-range
        start ascending (ties: larger first)."""
        p = self.program
        idx = np.arange(p.n_buffers)
        if kind == "priority":
            return np.lexsort((idx, p.buffer_lower, -(self.benefit / np.sqrt(p.buffer_size))))
        if kind == "size":
            return np.lexsort((idx, p.buffer_lower, -p.buffer_size))
        if kind == "start":
            return np.lexsort((idx, -p.buffer_size, p.buffer_lower))
        raise ValueError(f"order must be one of {ORDERS}, got {kind!r}")


class MappingState:
    """The tier game's state (public; heuristics read it): buffers visited in ``order``, each put in slow or
    fast memory; fast buffers get offsets in ``fast`` (an ``AddressSpace`` of the fast capacity).

    tier:       (B,) int8 — -1 undecided, 0 slow, 1 fast
    fast_bytes, slow_bytes: (n_ops,) int64 — bytes each op moves in each memory under the current tiers
    op_time:    (n_ops,) float64 — each op's time under the current tiers
    """

    def __init__(self, program: MemoryProgram, cost: CostModel, order: np.ndarray) -> None:
        self.program, self.cost = program, cost
        self.order = np.asarray(order, np.int64)
        b = program.n_buffers
        self.tier = np.full(b, -1, np.int8)
        self.fast = AddressSpace(
            program.buffer_lower, program.buffer_upper, program.buffer_size, program.spec.fast_capacity
        )
        self.fast_bytes = np.zeros(program.n_ops, np.int64)
        self.slow_bytes = cost.slow_bytes0.copy()
        self.op_time = cost.all_slow_times.copy()
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= self.order.size

    @property
    def current(self) -> int:
        """The buffer being decided (-1 when done)."""
        return int(self.order[self.pos]) if self.pos < self.order.size else -1

    def decide(self, offset: int) -> float:
        """Put the current buffer in slow memory (offset -1) or in fast memory at ``offset``; return the
        time saved (ns)."""
        b = self.current
        if b < 0:
            raise ValueError("every buffer is already decided")
        self.pos += 1
        if offset < 0:
            self.tier[b] = 0
            return 0.0
        self.tier[b] = 1
        self.fast.place(b, offset)
        ops, byts = self.cost.acc_op[b], self.cost.acc_bytes[b]
        if ops.size == 0:
            return 0.0
        self.fast_bytes[ops] += byts
        self.slow_bytes[ops] -= byts
        before = self.op_time[ops]
        after = self.cost.times(self.fast_bytes[ops], self.slow_bytes[ops], ops)
        self.op_time[ops] = after
        return float((before - after).sum())

    def exec_time(self) -> float:
        """Total time under the current tiers (same float operations as the validator)."""
        return float(self.cost.times(self.fast_bytes, self.slow_bytes).sum())
