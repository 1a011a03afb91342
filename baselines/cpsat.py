"""CP-SAT reference solver for the job shop (interval variables, NoOverlap per machine, precedences).

Solves the whole instance at ``reset`` within ``time_limit`` seconds, then dispatches operations in
increasing order of the solver's start times; the env's semi-active schedule is that schedule or a
left-shifted, no-worse one. The solver is warm-started with the MWKR schedule, so it never returns worse
than MWKR; if it finds nothing within the limit it falls back to that schedule and says so in
``info["solver_status"]``. ``info`` of the policy: ``solver_status``, ``solver_makespan``, ``solver_bound``.

Source: Google OR-Tools CP-SAT (Perron & Didier, https://developers.google.com/optimization); the model is
the standard disjunctive job-shop formulation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.jobshop.types import JobShopInstance


class CpSat:
    """Time-limited CP-SAT solve, replayed as a dispatching sequence."""

    name = "cpsat"
    env_ids = ("schedgym/JobShop-v0",)

    def __init__(self, time_limit: float = 10.0, num_workers: int = 2) -> None:
        if time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.time_limit = float(time_limit)
        self.num_workers = int(num_workers)
        self._order: list[int] = []
        self._pos = 0
        self.info: dict[str, Any] = {}

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        inst = env.unwrapped.state.instance  # type: ignore[attr-defined]
        start, self.info = solve(inst, self.time_limit, self.num_workers, seed or 0)
        # Jobs in order of operation start times (ties: earlier operation index, then lower job).
        j, k = np.nonzero(np.ones_like(start, dtype=bool))
        order = np.lexsort((j, k, start[j, k]))
        self._order = j[order].tolist()
        self._pos = 0

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self._pos >= len(self._order):
            raise RuntimeError("cpsat: more decisions asked than operations solved; call reset(env) first")
        a = self._order[self._pos]
        self._pos += 1
        return a


def solve(
    inst: JobShopInstance, time_limit: float, num_workers: int = 2, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (start times (J, K), {solver_status, solver_makespan, solver_bound, wall_s})."""
    from ortools.sat.python import cp_model

    m = cp_model.CpModel()
    horizon = int(inst.durations.sum())
    J, K = inst.machines.shape
    starts = [[m.new_int_var(0, horizon, f"s{j}_{k}") for k in range(K)] for j in range(J)]
    per_machine: list[list[Any]] = [[] for _ in range(inst.n_machines)]
    mk = m.new_int_var(0, horizon, "makespan")
    for j in range(J):
        for k in range(K):
            d = int(inst.durations[j, k])
            iv = m.new_fixed_size_interval_var(starts[j][k], d, f"i{j}_{k}")
            per_machine[int(inst.machines[j, k])].append(iv)
            if k + 1 < K:
                m.add(starts[j][k + 1] >= starts[j][k] + d)
        m.add(mk >= starts[j][K - 1] + int(inst.durations[j, K - 1]))
    for ivs in per_machine:
        m.add_no_overlap(ivs)
    m.minimize(mk)
    hint = _mwkr_schedule(inst)  # a complete feasible hint: CP-SAT starts from it and never does worse
    for j in range(J):
        for k in range(K):
            m.add_hint(starts[j][k], int(hint[j, k]))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = num_workers
    solver.parameters.random_seed = seed
    status = solver.solve(m)
    info = {"solver_status": solver.status_name(status), "solver_bound": int(solver.best_objective_bound),
            "wall_s": solver.wall_time}
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # No solution within the limit (tiny limits, loaded machine): fall back to the hint, and say so.
        info["solver_status"] += " (fell back to the MWKR hint)"
        info["solver_makespan"] = int((hint + inst.durations).max())
        return hint, info
    start = np.array([[solver.value(starts[j][k]) for k in range(K)] for j in range(J)], np.int64)
    info["solver_makespan"] = int(solver.objective_value)
    return start, info


def _mwkr_schedule(inst: JobShopInstance) -> np.ndarray:
    """Start times of the non-delay MWKR dispatching schedule (the solver's warm start)."""
    from schedgym.baselines._dispatching import non_delay_candidates
    from schedgym.envs.jobshop.sim import JobShopState

    st = JobShopState(inst)
    while not st.done:
        cands = non_delay_candidates(st)
        st.dispatch(int(cands[int(np.argmax(st.remaining_work[cands]))]))
    return st.start.copy()
