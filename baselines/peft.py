"""PEFT: Predict Earliest Finish Time (optimistic cost table lookahead).

Source: H. Arabnejad and J. G. Barbosa, "List scheduling algorithm for heterogeneous systems by an optimistic
cost table", IEEE Trans. Parallel and Distributed Systems 25(3):682-694, 2014.

OCT(t, p) = max over children c of min over PEs w supporting c of (OCT(c, w) + w(c, w) + [w != p] * c-bar),
0 for exit tasks. Priority rank_oct(t) = mean of OCT(t, p) over the PEs supporting t; tasks are taken from a
ready list in decreasing rank_oct and placed on the PE minimising the optimistic EFT = EFT(t, p) + OCT(t, p)
(insertion-based). Online behaviour: ``baselines/_listsched.py``.
"""

from __future__ import annotations

import math

from schedgym.baselines._listsched import Plan, PlanFollower, Residual, Timelines, list_schedule


def optimistic_cost_table(res: Residual) -> dict[int, list[float]]:
    """OCT of every residual task on every PE (children of residual tasks are residual)."""
    n_pes = res.n_pes
    oct_: dict[int, list[float]] = {}
    for i in reversed(res.topo_tasks()):
        row = [0.0] * n_pes
        for k in range(res.cptr[i], res.cptr[i + 1]):
            c, cbar = res.ctask[k], res.mean_c[res.cedge[k]]
            oc, wc = oct_[c], res.exec[c]
            for p in range(n_pes):
                best = math.inf
                for w in range(n_pes):
                    if wc[w] < math.inf:
                        v = oc[w] + wc[w] + (cbar if w != p else 0.0)
                        if v < best:
                            best = v
                if best > row[p]:
                    row[p] = best
        oct_[i] = row
    return oct_


def peft_plan(res: Residual) -> Plan:
    """PEFT's list schedule of the residual tasks."""
    table = optimistic_cost_table(res)
    rank = {}
    for i in res.tasks:
        sup = [table[i][p] for p in range(res.n_pes) if res.exec[i][p] < math.inf]
        rank[i] = sum(sup) / len(sup)

    def choose(tl: Timelines, i: int) -> int:
        return tl.best_eft(i, bonus=table[i].__getitem__)

    return list_schedule(res, rank, choose)


class Peft(PlanFollower):
    """PEFT acting online: plan over the tasks present, execute in planned start order."""

    name = "peft"

    def planner(self, res: Residual) -> Plan:
        return peft_plan(res)
