"""CPOP: Critical-Path-On-a-Processor.

Source: H. Topcuoglu, S. Hariri and M.-Y. Wu, "Performance-effective and low-complexity task scheduling for
heterogeneous computing", IEEE Trans. Parallel and Distributed Systems 13(3):260-274, 2002.

Priority = upward rank + downward rank. Per job, the critical-path tasks are those whose priority equals the
job's largest entry priority (compared with a relative tolerance of 1e-9, as ANRGUSC/saga does); the critical-
path processor is the PE minimising their summed run time. Tasks are taken from a ready list in decreasing
priority; critical-path tasks go to the critical-path processor (insertion-based earliest start), the others
to their earliest-finish PE. If no PE supports every critical-path task of a job, its critical-path tasks
are placed like the others. Online behaviour: ``baselines/_listsched.py``.
"""

from __future__ import annotations

import math

from schedgym.baselines._listsched import Plan, PlanFollower, Residual, Timelines, list_schedule

REL_TOL = 1e-9


def cpop_plan(res: Residual) -> Plan:
    """CPOP's list schedule of the residual tasks."""
    up, down = res.upward_rank(), res.downward_rank()
    prio = {i: up[i] + down[i] for i in res.tasks}
    entries_prio: dict[int, float] = {}
    for i in res.tasks:
        if all(res.ptask[k] not in res.in_plan for k in range(res.pptr[i], res.pptr[i + 1])):
            j = res.job[i]
            entries_prio[j] = max(entries_prio.get(j, -math.inf), prio[i])
    on_cp = {i for i in res.tasks if math.isclose(prio[i], entries_prio[res.job[i]], rel_tol=REL_TOL)}
    cp_pe: dict[int, int] = {}
    for j in entries_prio:
        cost = [sum(res.exec[i][p] for i in on_cp if res.job[i] == j) for p in range(res.n_pes)]
        best = min(range(res.n_pes), key=lambda p: (cost[p], p))
        if cost[best] < math.inf:
            cp_pe[j] = best

    def choose(tl: Timelines, i: int) -> int:
        p = cp_pe.get(res.job[i])
        if i in on_cp and p is not None:
            return p
        return tl.best_eft(i)

    return list_schedule(res, prio, choose)


class Cpop(PlanFollower):
    """CPOP acting online: plan over the tasks present, execute in planned start order."""

    name = "cpop"

    def planner(self, res: Residual) -> Plan:
        return cpop_plan(res)
