"""Shared machinery of the offline list schedulers (HEFT, CPOP, PEFT) and how they act online.

**Planning over the tasks present.** At a decision the planner takes every unassigned task of the admitted
jobs (ready or not) and builds a complete insertion-based list schedule for them on top of what is already
committed: assigned tasks keep their PE and their expected finish (actual finish once done), and a PE's new
work starts after its committed queue drains (queues are FIFO). Priorities (rank_u, rank_d, OCT) are
computed on this residual graph with mean execution times over the PEs that support a task and mean
communication costs ``mean latency + data * mean(1 / bandwidth)`` over pairs of distinct PEs.

**Executing the plan.** The policy emits the planned tasks in the order of their planned start times (ties:
finish, then placement order): a ready task is appended to its planned PE once every task planned before it on
that PE has been appended; if no ready task qualifies it waits for the next event. Without noise this
reproduces the plan exactly. The plan is rebuilt when a ready task is not in it (a job was admitted) and, with
``replan="auto"`` (default), when a finished task's actual finish differs from the plan (runtime noise);
``replan="arrivals"`` keeps executing the original order under noise (a static schedule).
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.dag.sim import DONE, READY, WAITING, DagState

DAG = "schedgym/DAGDispatch-v0"
REPLAN = ("auto", "arrivals")


class Residual:
    """Snapshot of the state a planner needs: the unassigned tasks and everything committed around them."""

    def __init__(self, st: DagState) -> None:
        inst = st.instance
        self.state, self.instance, self.now = st, inst, st.now
        self.n_pes = inst.n_pes
        self.exec = inst.exec_time.tolist()
        self.mean_w = inst.mean_exec_time().tolist()
        self.mean_c = inst.mean_comm_time().tolist()  # (E,) mean edge cost
        self.lat = inst.platform.latency.tolist()
        self.inv_bw = (1.0 / inst.platform.bandwidth).tolist()
        self.data = inst.workload.edge_data.tolist()
        self.free = st.pe_available().tolist()
        status = st.status
        self.tasks = np.flatnonzero((status == WAITING) | (status == READY)).tolist()
        self.in_plan = set(self.tasks)
        pos = np.empty(inst.n_tasks, np.int64)
        pos[inst.topo_order] = np.arange(inst.n_tasks)
        self.topo_pos = pos.tolist()
        self.pptr, self.ptask, self.pedge = (
            inst.parent_ptr.tolist(),
            inst.parent_task.tolist(),
            inst.parent_edge.tolist(),
        )
        self.cptr, self.ctask, self.cedge = (
            inst.child_ptr.tolist(),
            inst.child_task.tolist(),
            inst.child_edge.tolist(),
        )
        self.fixed_pe = st.pe.tolist()
        self.fixed_finish = np.where(status == DONE, st.finish, st.expected_finish).tolist()
        self.job = inst.workload.task_job.tolist()

    def topo_tasks(self) -> list[int]:
        return sorted(self.tasks, key=self.topo_pos.__getitem__)

    def upward_rank(self) -> dict[int, float]:
        """rank_u on the residual graph (children of unassigned tasks are unassigned)."""
        rank: dict[int, float] = {}
        for i in reversed(self.topo_tasks()):
            best = 0.0
            for k in range(self.cptr[i], self.cptr[i + 1]):
                v = self.mean_c[self.cedge[k]] + rank[self.ctask[k]]
                if v > best:
                    best = v
            rank[i] = self.mean_w[i] + best
        return rank

    def downward_rank(self) -> dict[int, float]:
        """rank_d on the residual graph (committed parents count as already done: rank_d = 0 there)."""
        rank: dict[int, float] = {}
        for i in self.topo_tasks():
            best = 0.0
            for k in range(self.pptr[i], self.pptr[i + 1]):
                m = self.ptask[k]
                if m in self.in_plan:
                    v = rank[m] + self.mean_w[m] + self.mean_c[self.pedge[k]]
                    if v > best:
                        best = v
            rank[i] = best
        return rank


@dataclass
class Plan:
    """A list schedule of the residual tasks: PE, planned start and finish, and the emission order per PE."""

    pe: dict[int, int]
    start: dict[int, float]
    finish: dict[int, float]
    per_pe: list[list[int]]  # planned tasks of each PE in emission order
    key: dict[int, tuple[float, float, int]]  # emission key (start, finish, placement index)


class Timelines:
    """Planned busy intervals per PE (after the committed queue) with insertion-based earliest starts."""

    def __init__(self, res: Residual) -> None:
        self.res = res
        self.busy: list[list[tuple[float, float]]] = [[] for _ in range(res.n_pes)]
        self.pe: dict[int, int] = {}
        self.start: dict[int, float] = {}
        self.finish: dict[int, float] = {}
        self.placed: list[int] = []

    def data_ready(self, i: int, p: int) -> float:
        """When every input of task i could be on PE p."""
        r = self.res
        t = r.now
        for k in range(r.pptr[i], r.pptr[i + 1]):
            m = r.ptask[k]
            if m in self.pe:
                q, f = self.pe[m], self.finish[m]
            else:
                q, f = r.fixed_pe[m], r.fixed_finish[m]
            if q != p:
                f = f + r.lat[q][p] + r.data[r.pedge[k]] * r.inv_bw[q][p]
            if f > t:
                t = f
        return t

    def earliest_start(self, i: int, p: int) -> float:
        """Insertion: the first idle gap on p of length exec(i, p) starting at or after the data is there."""
        d = self.res.exec[i][p]
        t = max(self.data_ready(i, p), self.res.free[p])
        for s, e in self.busy[p]:
            if e <= t:
                continue
            if t + d <= s:
                break
            t = max(t, e)
        return t

    def eft(self, i: int, p: int) -> float:
        d = self.res.exec[i][p]
        return float("inf") if d == float("inf") else self.earliest_start(i, p) + d

    def best_eft(self, i: int, bonus: Callable[[int], float] | None = None) -> int:
        """The supporting PE minimising EFT (+ ``bonus(p)``); ties go to the lowest PE index."""
        best_p, best_v = -1, float("inf")
        for p in range(self.res.n_pes):
            v = self.eft(i, p)
            if bonus is not None and v < float("inf"):
                v += bonus(p)
            if v < best_v:
                best_p, best_v = p, v
        if best_p < 0:
            raise RuntimeError(f"task {i} is supported by no PE")
        return best_p

    def place(self, i: int, p: int) -> None:
        s = self.earliest_start(i, p)
        f = s + self.res.exec[i][p]
        insort(self.busy[p], (s, f))
        self.pe[i], self.start[i], self.finish[i] = p, s, f
        self.placed.append(i)

    def plan(self) -> Plan:
        key = {i: (self.start[i], self.finish[i], n) for n, i in enumerate(self.placed)}
        per_pe: list[list[int]] = [[] for _ in range(self.res.n_pes)]
        for i in sorted(self.placed, key=key.__getitem__):
            per_pe[self.pe[i]].append(i)
        return Plan(self.pe, self.start, self.finish, per_pe, key)


def list_schedule(res: Residual, priority: dict[int, float], choose: Callable[[Timelines, int], int]) -> Plan:
    """Place tasks by decreasing priority once their residual parents are placed (ties: topological)."""
    tl = Timelines(res)
    waiting = {
        i: sum(1 for k in range(res.pptr[i], res.pptr[i + 1]) if res.ptask[k] in res.in_plan)
        for i in res.tasks
    }
    heap = [(-priority[i], res.topo_pos[i], i) for i, n in waiting.items() if n == 0]
    heapq.heapify(heap)
    while heap:
        _, _, i = heapq.heappop(heap)
        tl.place(i, choose(tl, i))
        for k in range(res.cptr[i], res.cptr[i + 1]):
            c = res.ctask[k]
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(heap, (-priority[c], res.topo_pos[c], c))
    if len(tl.placed) != len(res.tasks):
        raise RuntimeError(
            "list_schedule left tasks unplaced (the residual graph is not closed under children)"
        )
    return tl.plan()


Planner = Callable[[Residual], Plan]


class PlanFollower:
    """Base policy: plan with ``self.planner`` over the tasks present and emit the plan in start order."""

    name = "plan"
    env_ids = (DAG,)

    def __init__(self, replan: str = "auto") -> None:
        if replan not in REPLAN:
            raise ValueError(f"replan must be one of {REPLAN}, got {replan!r}")
        self.replan = replan
        self.env: Any = None
        self.plan: Plan | None = None
        self.n_plans = 0

    def planner(self, res: Residual) -> Plan:
        raise NotImplementedError

    def reset(self, env: gym.Env, seed: int | None = None) -> None:
        self.env = env.unwrapped
        self.plan, self.n_plans = None, 0

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if self.env is None:
            raise RuntimeError(f"{self.name}: call reset(env) before act()")
        st: DagState = self.env.state
        if self._stale(st):
            self._make_plan(st)
        a = self._next_action(st)
        if a is None:
            if len(st.events):
                return int(self.env.wait_action)
            self._make_plan(st)  # cannot happen with a consistent plan; replan rather than deadlock
            a = self._next_action(st)
            if a is None:
                raise RuntimeError(f"{self.name}: no plannable ready task and nothing to wait for")
        return a

    def _make_plan(self, st: DagState) -> None:
        self.plan = self.planner(Residual(st))
        self.n_plans += 1
        self._ptr = [0] * st.instance.n_pes
        tasks = np.fromiter(self.plan.finish, np.int64, len(self.plan.finish))
        self._tasks, self._planned_finish = (
            tasks,
            np.fromiter(self.plan.finish.values(), np.float64, tasks.size),
        )
        self._n_done_checked = st.n_done

    def _stale(self, st: DagState) -> bool:
        plan = self.plan
        if plan is None or any(i not in plan.pe for i in st.ready):
            return True
        if self.replan == "auto" and st.n_done != self._n_done_checked:
            self._n_done_checked = st.n_done
            done = st.status[self._tasks] == DONE
            if done.any():
                f = st.finish[self._tasks[done]]
                if not np.allclose(f, self._planned_finish[done], rtol=1e-9, atol=0.0):
                    return True
        return False

    def _next_action(self, st: DagState) -> int | None:
        plan = self.plan
        assert plan is not None
        best, best_key = None, None
        status = st.status
        for p, lst in enumerate(plan.per_pe):
            k = self._ptr[p]
            while k < len(lst) and status[lst[k]] > READY:  # already appended to its queue
                k += 1
            self._ptr[p] = k
            if k < len(lst) and status[lst[k]] == READY:
                i = lst[k]
                if best_key is None or plan.key[i] < best_key:
                    best, best_key = i, plan.key[i]
        if best is None:
            return None
        return int(self.env.action_of(best, plan.pe[best]))
