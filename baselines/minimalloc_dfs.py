"""MiniMalloc-style exact search for offset allocation: depth-first over canonical solutions.

A re-implementation in Python/numpy of the search described in the paper (not a port of its C++):
buffers are placed one at a time at their skyline offset, in non-decreasing offset order (canonical
solutions, so no packing is lost), with

- dynamic ordering: try the unplaced buffers by increasing skyline offset, ties by a static preorder;
- dominance: never place a buffer at or above the lowest top any other unplaced buffer could reach;
- section inference: prune when, in some section, max(floor, current offset, lowest skyline offset of the
  unplaced buffers there) + their total size exceeds the capacity (with zero slack this sees every gap);
- dynamic decomposition: when no unplaced buffer crosses a section boundary, the two sides are solved
  independently;
- round robin over three preorders with a node limit that doubles, like MiniMalloc's defaults.

The search is bounded by ``time_limit`` seconds of CPU time (it is single-threaded; CPU time makes the budget
independent of the machine's load) and ``node_limit`` nodes; if it finds no packing within the
capacity in time, the policy falls back to the best greedy packing (best/first fit by size, first fit by
start) so that every episode still ends with a complete placement. ``info`` says which happened.

Source: M. D. Moffitt, "MiniMalloc: A Lightweight Memory Allocator for Hardware-Accelerated Machine
Learning", ASPLOS '23 Vol. 4, pp. 238-252, DOI 10.1145/3623278.3624752 (google/minimalloc, Apache-2.0).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from schedgym.baselines._memory import OFFSETS, MemoryPlanner, greedy_offsets
from schedgym.envs.memory.sim import Sections
from schedgym.envs.memory.types import OffsetInstance

_BIG = np.iinfo(np.int64).max // 4
PREORDERS = ("LAT", "TAL", "TLA")  # T = max section total, A = area, L = lifetime length (all descending)


class _Stop(Exception):
    """Node or time budget exhausted."""


class CanonicalSearch:
    """Depth-first search over canonical packings of one instance at one capacity."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, size: np.ndarray, capacity: int) -> None:
        self.lower, self.upper, self.size = (np.asarray(a, np.int64) for a in (lower, upper, size))
        self.capacity = int(capacity)
        self.n = n = self.size.size
        sec = Sections(self.lower, self.upper)
        self.first, self.last, self.n_sec = sec.first, sec.last, sec.n
        # (section, buffer) cover pairs sorted by section: pair_buf[sec_start[s]:sec_start[s+1]] live in s.
        counts = self.last - self.first
        pair_sec = np.concatenate(
            [np.arange(f, e) for f, e in zip(self.first.tolist(), self.last.tolist(), strict=True)]
        )
        order = np.argsort(pair_sec, kind="stable")
        self.pair_buf = np.repeat(np.arange(n), counts)[order]
        self.sec_start = np.searchsorted(pair_sec[order], np.arange(sec.n + 1))
        self._vals = np.empty(pair_sec.size + 1, np.int64)
        self.cover_total = np.zeros(sec.n, np.int64)
        np.add.at(self.cover_total, pair_sec, np.repeat(self.size, counts))
        ov = (self.lower[:, None] < self.upper[None, :]) & (self.lower[None, :] < self.upper[:, None])
        np.fill_diagonal(ov, False)
        self.overlaps = [np.flatnonzero(row) for row in ov]
        self.nodes = 0

    def solve(
        self, time_limit: float = 60.0, node_limit: int | None = None, preorders: tuple[str, ...] = PREORDERS
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """Offsets of a packing within the capacity, or None; and stats (status, nodes, wall_s)."""
        t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.deadline = self.cpu0 + time_limit
        self.nodes = 0
        total_nodes = 0
        limit = 2 * self.n
        status = "limit"
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 20 * self.n + 1000))
        try:
            while True:
                for h in preorders:
                    budget = limit if node_limit is None else min(limit, node_limit - total_nodes)
                    if budget <= 0:
                        raise _Stop
                    self._reset()
                    self.node_budget = budget
                    self.heuristic = h
                    self.rank = self._preorder(h)
                    try:
                        cuts = np.flatnonzero(self.crossing == 0) + 1
                        found = self._solve_parts(np.arange(self.n), [0, *cuts.tolist(), self.n_sec])
                    except _Stop:
                        total_nodes += self.nodes
                        self.nodes = 0
                        if time.process_time() > self.deadline:
                            raise
                        continue
                    total_nodes += self.nodes
                    status = "found" if found else "infeasible"
                    if found:
                        return self.solution.copy(), self._stats(status, total_nodes, t0, h)
                    return None, self._stats(status, total_nodes, t0, h)
                limit *= 2
        except _Stop:
            status = "time limit" if time.process_time() > self.deadline else "node limit"
            return None, self._stats(status, total_nodes, t0, "")
        finally:
            sys.setrecursionlimit(old)

    def _stats(self, status: str, nodes: int, t0: float, h: str) -> dict[str, Any]:
        return {
            "search_status": status,
            "search_nodes": nodes,
            "search_wall_s": round(time.perf_counter() - t0, 3),
            "search_cpu_s": round(time.process_time() - self.cpu0, 3),
            "search_preorder": h,
        }

    def _reset(self) -> None:
        n, s = self.n, self.n_sec
        self.offset = np.full(n, -1, np.int64)
        self.solution = np.full(n, -1, np.int64)
        self.min_off = np.zeros(n, np.int64)
        self.floor = np.zeros(s, np.int64)
        self.total = self.cover_total.copy()
        self.crossing = np.zeros(max(s - 1, 0), np.int64)  # unplaced buffers spanning boundary s|s+1
        for b in range(n):
            self.crossing[self.first[b] : self.last[b] - 1] += 1
        self.nodes = 0

    def _preorder(self, h: str, bufs: np.ndarray | None = None) -> np.ndarray:
        """Ranks 0..k-1 of ``bufs`` (default all) in the static preorder ``h`` with the current section totals
        (lower = tried first on ties); MiniMalloc recomputes it for every subproblem."""
        b = np.arange(self.n) if bufs is None else bufs
        keys = {
            "T": np.array(
                [
                    self.total[f:e].max()
                    for f, e in zip(self.first[b].tolist(), self.last[b].tolist(), strict=True)
                ]
            ),
            "A": self.size[b] * (self.upper[b] - self.lower[b]),
            "L": self.upper[b] - self.lower[b],
            "Z": self.size[b],
        }
        order = np.lexsort([b] + [-keys[c] for c in reversed(h)])
        rank = np.empty(b.size, np.int64)
        rank[order] = np.arange(b.size)
        return rank

    def _subsolve(self, bufs: np.ndarray, s_lo: int, s_hi: int) -> bool:
        """Solve the unplaced buffers ``bufs`` living in sections [s_lo, s_hi) from offset 0."""
        old = self.rank[bufs]
        self.rank[bufs] = self._preorder(self.heuristic, bufs)
        try:
            return self._dfs(bufs, s_lo, s_hi, -1, -1)
        finally:
            self.rank[bufs] = old

    def _dfs(self, bufs: np.ndarray, s_lo: int, s_hi: int, last_off: int, last_rank: int) -> bool:
        self.nodes += 1
        if self.nodes > self.node_budget or (self.nodes & 63 == 0 and time.process_time() > self.deadline):
            raise _Stop
        un = bufs[self.offset[bufs] < 0]
        if un.size == 0:
            return True
        mo = self.min_off[un]
        order = un[np.lexsort((self.rank[un], mo))]
        min_height = int((mo + self.size[un]).min())
        size, cap = self.size, self.capacity
        # Necessary condition of the section check for any candidate at offset o: every section with
        # unplaced buffers ends at least at max(floor, o) + their total, so o <= capacity - max total.
        o_max = cap - int(self.total[s_lo:s_hi].max())
        for u in order.tolist():
            o = int(self.min_off[u])
            if o < last_off or (o == last_off and self.rank[u] < last_rank):
                continue  # not canonical: offsets must not decrease
            if o >= min_height or o > o_max:
                break  # dominated or over capacity (and so is every later buffer: they are sorted by offset)
            top = o + int(size[u])
            if top > cap:
                continue
            # Place u.
            self.offset[u] = o
            nb = self.overlaps[u]
            nb = nb[(self.offset[nb] < 0) & (self.min_off[nb] < top)]
            old_mo = self.min_off[nb].copy()
            self.min_off[nb] = top
            f, e = int(self.first[u]), int(self.last[u])
            old_floor = self.floor[f:e].copy()
            self.floor[f:e] = top
            self.total[f:e] -= size[u]
            self.crossing[f : e - 1] -= 1
            found = False
            if self._check(s_lo, s_hi, o):
                cuts = np.flatnonzero(self.crossing[f : e - 1] == 0)
                if cuts.size and s_hi - s_lo > 1:
                    found = self._decompose(un, u, s_lo, s_hi, f + 1 + cuts, o, int(self.rank[u]))
                else:
                    found = self._dfs(un, s_lo, s_hi, o, int(self.rank[u]))
            self.crossing[f : e - 1] += 1
            self.total[f:e] += size[u]
            self.floor[f:e] = old_floor
            self.min_off[nb] = old_mo
            self.offset[u] = -1
            if found:
                self.solution[u] = o
                return True
        return False

    def _check(self, s_lo: int, s_hi: int, o: int) -> bool:
        """Section inference over the sections of this partition: max(floor, o, lowest skyline offset of the
        unplaced buffers there) + their total size must not exceed the capacity."""
        p0 = int(self.sec_start[s_lo])
        pb = self.pair_buf[p0 : int(self.sec_start[s_hi])]
        vals = self._vals[: pb.size + 1]
        np.copyto(vals[:-1], np.where(self.offset[pb] < 0, self.min_off[pb], _BIG))
        vals[-1] = _BIG  # sentinel: reduceat indices may point one past the last pair (empty sections)
        low = np.minimum.reduceat(vals, self.sec_start[s_lo:s_hi] - p0)
        tot = self.total[s_lo:s_hi]
        eff = np.maximum(np.maximum(self.floor[s_lo:s_hi], o), low) + tot
        return bool(((eff <= self.capacity) | (tot == 0)).all())

    def _decompose(
        self, un: np.ndarray, u: int, s_lo: int, s_hi: int, cuts: np.ndarray, o: int, r: int
    ) -> bool:
        """Split the remaining buffers at the boundaries no unplaced buffer crosses; solve each part alone."""
        points = [s_lo] + [int(c) for c in cuts if s_lo < c < s_hi] + [s_hi]
        if len(points) == 2:
            return self._dfs(un, s_lo, s_hi, o, r)
        return self._solve_parts(un[un != u], points)

    def _solve_parts(self, rest: np.ndarray, points: list[int]) -> bool:
        """Solve the buffers of each [points[i], points[i+1]) section range independently."""
        for a, b in zip(points[:-1], points[1:], strict=True):
            part = rest[(self.first[rest] < b) & (self.last[rest] > a)]
            if part.size and not self._subsolve(part, a, b):
                return False
        return True


def search_offsets(
    instance: OffsetInstance,
    capacity: int | None = None,
    time_limit: float = 60.0,
    node_limit: int | None = None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Run the canonical search on ``instance`` at ``capacity`` (default: the instance's)."""
    cap = instance.capacity if capacity is None else int(capacity)
    return CanonicalSearch(instance.lower, instance.upper, instance.size, cap).solve(time_limit, node_limit)


class MinimallocDfs(MemoryPlanner):
    """MiniMalloc-style canonical DFS within ``time_limit`` CPU s, replayed in offset order. If it finds none
    within the capacity: CP-SAT for ``cpsat_fallback`` s when that is > 0 (a portfolio), then the best greedy
    packing, so that the episode always ends with a complete placement."""

    name = "minimalloc_dfs"
    env_ids = (OFFSETS,)

    def __init__(
        self, time_limit: float = 60.0, node_limit: int | None = None, cpsat_fallback: float = 0.0
    ) -> None:
        super().__init__()
        if time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        if node_limit is not None and node_limit < 1:
            raise ValueError(f"node_limit must be >= 1, got {node_limit}")
        if cpsat_fallback < 0:
            raise ValueError(f"cpsat_fallback must be >= 0 seconds, got {cpsat_fallback}")
        self.time_limit = float(time_limit)
        self.node_limit = node_limit
        self.cpsat_fallback = float(cpsat_fallback)

    def plan_offsets(self, instance: OffsetInstance) -> np.ndarray:
        offsets, stats = search_offsets(instance, time_limit=self.time_limit, node_limit=self.node_limit)
        self.info.update(stats)
        if offsets is not None:
            return offsets
        if self.cpsat_fallback > 0:
            from schedgym.baselines.cpsat_memory import solve_offsets

            offsets, info = solve_offsets(instance, self.cpsat_fallback)
            self.info.update({f"cpsat_{k}": v for k, v in info.items()})
            self.info["fallback"] = "cpsat"
            return offsets
        offsets, rule = greedy_offsets(instance)
        self.info["fallback"] = rule
        return offsets
