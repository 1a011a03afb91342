"""HEFT: Heterogeneous Earliest Finish Time (upward rank, insertion-based earliest finish time).

Source: H. Topcuoglu, S. Hariri and M.-Y. Wu, "Performance-effective and low-complexity task scheduling for
heterogeneous computing", IEEE Trans. Parallel and Distributed Systems 13(3):260-274, 2002.

Tasks are placed in decreasing upward rank (mean run time plus the longest mean-cost path to an exit), each
on the PE that gives it the earliest finish time, using idle gaps (insertion). Online, it plans over the tasks
present at each decision and emits the plan in start-time order (``baselines/_listsched.py``).
"""

from __future__ import annotations

from schedgym.baselines._listsched import Plan, PlanFollower, Residual, list_schedule


def heft_plan(res: Residual) -> Plan:
    """HEFT's insertion-based list schedule of the residual tasks."""
    return list_schedule(res, res.upward_rank(), lambda tl, i: tl.best_eft(i))


class Heft(PlanFollower):
    """HEFT acting online: plan over the tasks present, execute in planned start order."""

    name = "heft"

    def planner(self, res: Residual) -> Plan:
        return heft_plan(res)
