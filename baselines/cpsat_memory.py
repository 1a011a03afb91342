"""CP-SAT models for both memory games, solved at ``reset`` within a time limit and replayed.

MemoryOffsets: an offset variable per buffer, the address intervals of buffers that are live together in a
``NoOverlap2D`` (time intervals fixed) and a redundant cumulative over time. Phase 1 (half the time) looks for
any packing within the capacity; if it finds none, phase 2 minimises the peak address from the best greedy
packing (hint and upper bound; the peak live size is the lower bound).

MemoryMapping (small programs): a fast/slow literal and an offset per buffer, optional boxes in a
``NoOverlap2D`` within the fast capacity, each op's time >= its compute time and >= its memory time under
the chosen tiers (integer picoseconds), minimise the total. XLA's greedy solution is the hint. The env
replays the fast set in its own visit order with its own offsets (see ``_memory``), so ``info`` reports the
solver's planned time next to what the env realises.

``info``: ``solver_status``, ``solver_objective``, ``solver_bound``, ``wall_s``.

Source: Google OR-Tools CP-SAT (Perron & Didier, https://developers.google.com/optimization); the
offset model is the standard 2-D packing formulation of dynamic storage allocation (e.g. TelaMalloc,
M. Maas et al., ASPLOS'23, which combines heuristics with a CP solver).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.baselines._memory import MAPPING, OFFSETS, MemoryPlanner, greedy_offsets
from schedgym.baselines.xla_msa import XlaMsa
from schedgym.envs.memory.sim import CostModel
from schedgym.envs.memory.types import MemoryProgram, OffsetInstance

PS_PER_NS = 1000  # the mapping model counts time in integer picoseconds


def _solver(time_limit: float, num_workers: int, seed: int) -> Any:
    from ortools.sat.python import cp_model

    s = cp_model.CpSolver()
    s.parameters.max_time_in_seconds = time_limit
    s.parameters.num_workers = num_workers
    s.parameters.random_seed = seed
    return s


def solve_offsets(
    inst: OffsetInstance, time_limit: float = 10.0, num_workers: int = 2, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Two phases: first look for a packing within the capacity (MiniMalloc's question; half the time),
    then, if none was found, minimise the peak from the best greedy packing. Never worse than that packing."""
    half = time_limit / 2
    if inst.peak_live() <= inst.capacity:
        off, info = _offset_model(inst, inst.capacity, None, half, num_workers, seed)
        if off is not None:
            return off, {**info, "solver_phase": "fit"}
    hint, _ = greedy_offsets(inst)
    ub = int((hint + inst.size).max())
    off, info = _offset_model(inst, ub, hint, time_limit - half, num_workers, seed)
    return (hint if off is None else off), {**info, "solver_phase": "min peak"}


def _offset_model(
    inst: OffsetInstance, height: int, hint: np.ndarray | None, time_limit: float, num_workers: int, seed: int
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Offsets within ``height``; with a hint, also minimise the peak (from the hint's). Sizes and offsets are
    counted in units of g = gcd(sizes) (1024 for MiniMalloc's instances): no packing is lost, since dropping
    every buffer onto the one below it (``sim`` docstring) gives offsets that are sums of sizes."""
    from ortools.sat.python import cp_model

    g = int(np.gcd.reduce(inst.size))
    size = inst.size // g
    m = cp_model.CpModel()
    peak = m.new_int_var(inst.peak_live() // g, height // g, "peak")
    offs, xs, ys = [], [], []
    for b in range(inst.n_buffers):
        lo, up, sz = int(inst.lower[b]), int(inst.upper[b]), int(size[b])
        o = m.new_int_var(0, height // g - sz, f"o{b}")
        if hint is not None and hint[b] % g == 0:
            m.add_hint(o, int(hint[b]) // g)
        m.add(o + sz <= peak)
        offs.append(o)
        xs.append(m.new_fixed_size_interval_var(lo, up - lo, f"t{b}"))
        ys.append(m.new_fixed_size_interval_var(o, sz, f"a{b}"))
    m.add_no_overlap_2d(xs, ys)
    m.add_cumulative(xs, size.tolist(), peak)  # redundant: what is live at once fits under the peak
    if hint is not None:
        m.add_hint(peak, height // g)
        m.minimize(peak)
    solver = _solver(time_limit, num_workers, seed)
    status = solver.solve(m)
    info: dict[str, Any] = {"solver_status": solver.status_name(status), "wall_s": round(solver.wall_time, 3)}
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, info
    off = np.array([solver.value(o) for o in offs], np.int64) * g
    info["solver_objective"] = int((off + inst.size).max())
    if hint is not None:
        info["solver_bound"] = int(solver.best_objective_bound) * g
    return off, info


def solve_mapping(
    program: MemoryProgram, cost: CostModel, time_limit: float = 10.0, num_workers: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fast set and offsets minimising the (picosecond-rounded) execution time within the time limit."""
    from ortools.sat.python import cp_model

    spec = program.spec
    cap = spec.fast_capacity
    hint_fast, hint_off = XlaMsa().plan_mapping(program, cost)
    m = cp_model.CpModel()
    fast, offs, xs, ys = [], [], [], []
    for b in range(program.n_buffers):
        sz = int(program.buffer_size[b])
        lo, up = int(program.buffer_lower[b]), int(program.buffer_upper[b])
        if sz > cap or cost.benefit[b] <= 0:
            fast.append(None)  # cannot fit, or cannot save time: slow in some optimal solution
            continue
        f = m.new_bool_var(f"f{b}")
        o = m.new_int_var(0, cap - sz, f"o{b}")
        m.add_hint(f, bool(hint_fast[b]))
        m.add_hint(o, int(max(hint_off[b], 0)))
        fast.append(f)
        offs.append((b, o))
        xs.append(m.new_optional_fixed_size_interval_var(lo, up - lo, f, f"t{b}"))
        ys.append(m.new_optional_fixed_size_interval_var(o, sz, f, f"a{b}"))
    if xs:
        m.add_no_overlap_2d(xs, ys)
    by_op: list[list[tuple[int, int]]] = [[] for _ in range(program.n_ops)]  # (buffer, bytes) per op
    for b, (ops, byts) in enumerate(zip(cost.acc_op, cost.acc_bytes, strict=True)):
        for o, nbytes in zip(ops.tolist(), byts.tolist(), strict=True):
            by_op[o].append((b, nbytes))
    total = []
    for j in range(program.n_ops):
        comp = int(round(program.op_compute[j] * PS_PER_NS))
        slow_ps, terms = 0, []
        for b, byts in by_op[j]:
            s_ps = int(round(byts / spec.slow_bandwidth * PS_PER_NS))
            slow_ps += s_ps
            if fast[b] is not None:
                f_ps = int(round(byts / spec.fast_bandwidth * PS_PER_NS))
                terms.append((fast[b], f_ps - s_ps))
        if not terms:
            total.append(max(comp, slow_ps))
            continue
        t = m.new_int_var(comp, max(comp, slow_ps), f"time{j}")
        m.add(t >= slow_ps + sum(c * f for f, c in terms))
        total.append(t)
    m.minimize(sum(total))
    solver = _solver(time_limit, num_workers, seed)
    status = solver.solve(m)
    info = {"solver_status": solver.status_name(status), "wall_s": round(solver.wall_time, 3)}
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return hint_fast, hint_off, info
    info["solver_objective"] = solver.objective_value / PS_PER_NS
    info["solver_bound"] = solver.best_objective_bound / PS_PER_NS
    sel = np.zeros(program.n_buffers, bool)
    off = np.full(program.n_buffers, -1, np.int64)
    for b, o in offs:
        if solver.value(fast[b]):
            sel[b] = True
            off[b] = solver.value(o)
    return sel, off, info


class CpSatMemory(MemoryPlanner):
    """Time-limited CP-SAT solve of either memory game, replayed as actions."""

    name = "cpsat"
    env_ids = (OFFSETS, MAPPING)

    def __init__(self, time_limit: float = 10.0, num_workers: int = 2, seed: int = 0) -> None:
        super().__init__()
        if time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.time_limit, self.num_workers, self.seed = float(time_limit), int(num_workers), int(seed)

    def plan_offsets(self, instance: OffsetInstance) -> np.ndarray:
        off, info = solve_offsets(instance, self.time_limit, self.num_workers, self.seed)
        self.info.update(info)
        return off

    def plan_mapping(self, program: MemoryProgram, cost: CostModel) -> tuple[np.ndarray, np.ndarray]:
        sel, off, info = solve_mapping(program, cost, self.time_limit, self.num_workers, self.seed)
        self.info.update(info)
        return sel, off
