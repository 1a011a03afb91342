"""Multi-stage workflows (HEXGEN-Text2SQL): requests that are stages of a DAG with end-to-end deadlines.

A workload may carry ``Workflows``: each request is a stage of one workflow; a stage *arrives* (is released
to the router) when its last parent finishes, not at its trace time (roots arrive at the workflow's arrival);
a workflow meets its deadline when its last stage finishes within ``deadline_s`` of the workflow's arrival.
``EngineConfig.queue_policy = "edf"`` makes every engine admit waiting stages by earliest workflow deadline
(urgency-aware ordering) instead of first come, first served.

``text2sql_workload`` builds the Text2SQL pipeline of HEXGEN-Text2SQL's evaluation shape: schema linking ->
``k`` SQL candidates in parallel -> a selection / correction stage, with prompt and output lengths drawn from
a real trace's requests and deadlines drawn per workflow.

Source: "HEXGEN-TEXT2SQL: Optimizing LLM Inference Request Scheduling for Agentic Text-to-SQL Workflow",
arXiv:2505.05286 (2025): urgency-aware dispatch and queueing raise deadline attainment over FCFS.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from schedgym.envs.serving.types import ServingWorkload


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Workflows:
    """workflow:       (R,) int64   — workflow of each stage (0..W-1, non-decreasing)
    parent_offsets: (R+1,) int64 — CSR: stage r's parents are ``parents[parent_offsets[r]:parent_offsets[r+1]]``
    parents:        (E,) int64   — parent stages (earlier indices of the same workflow)
    deadline_s:     (W,) float64 — end-to-end deadline of each workflow, seconds after its arrival (> 0)
    """

    workflow: np.ndarray
    parent_offsets: np.ndarray
    parents: np.ndarray
    deadline_s: np.ndarray

    def __post_init__(self) -> None:
        wf = np.asarray(self.workflow, dtype=np.int64)
        off = np.asarray(self.parent_offsets, dtype=np.int64)
        par = np.asarray(self.parents, dtype=np.int64)
        dl = np.asarray(self.deadline_s, dtype=np.float64)
        R, W = wf.size, dl.size
        if wf.ndim != 1 or R < 1 or (wf < 0).any() or (np.diff(wf) < 0).any() or wf.max() >= W:
            raise ValueError(f"workflows: workflow must be (R,) non-decreasing ids in 0..{W - 1} (one deadline "
                             "per workflow)")
        if off.shape != (R + 1,) or off[0] != 0 or (np.diff(off) < 0).any() or off[-1] != par.size:
            raise ValueError(f"workflows: parent_offsets must be ({R + 1},) non-decreasing from 0 to "
                             f"len(parents)={par.size}")
        child = np.repeat(np.arange(R), np.diff(off))
        bad = np.flatnonzero((par < 0) | (par >= child))
        if bad.size:
            raise ValueError(f"workflows: stage {child[bad[0]]} has parent {par[bad[0]]}; parents must be earlier "
                             "stages (a DAG in topological order)")
        bad = np.flatnonzero(wf[par] != wf[child])
        if bad.size:
            raise ValueError(f"workflows: stage {child[bad[0]]} (workflow {wf[child[bad[0]]]}) has parent "
                             f"{par[bad[0]]} of another workflow")
        if not np.all(np.isfinite(dl)) or (dl <= 0).any():
            raise ValueError("workflows: every deadline_s must be a finite number > 0")
        for name, v in (("workflow", wf), ("parent_offsets", off), ("parents", par), ("deadline_s", dl)):
            object.__setattr__(self, name, _ro(v))

    @property
    def n_workflows(self) -> int:
        return int(self.deadline_s.size)

    def parents_of(self, r: int) -> np.ndarray:
        return self.parents[self.parent_offsets[r]:self.parent_offsets[r + 1]]

    def children(self) -> list[list[int]]:
        """Children of every stage."""
        out: list[list[int]] = [[] for _ in range(self.workflow.size)]
        for r in range(self.workflow.size):
            for p in self.parents_of(r).tolist():
                out[p].append(r)
        return out

    def check_roots(self, arrival: np.ndarray) -> None:
        """Every stage of a workflow carries the workflow's arrival time."""
        first = np.r_[0, np.flatnonzero(np.diff(self.workflow)) + 1]
        wf_arrival = arrival[first]
        bad = np.flatnonzero(arrival != wf_arrival[self.workflow])
        if bad.size:
            raise ValueError(f"workflows: stage {bad[0]} arrives at {arrival[bad[0]]} but its workflow arrives at "
                             f"{wf_arrival[self.workflow[bad[0]]]}; give every stage its workflow's arrival")

    def workflow_arrival(self, arrival: np.ndarray) -> np.ndarray:
        first = np.r_[0, np.flatnonzero(np.diff(self.workflow)) + 1]
        return arrival[first]

    def attainment(self, arrival: np.ndarray, finish: np.ndarray) -> float:
        """Fraction of workflows whose every stage finished within the deadline (unfinished = missed)."""
        end = np.full(self.n_workflows, -np.inf)
        np.maximum.at(end, self.workflow, np.where(np.isnan(finish), np.inf, finish))
        return float(np.mean(end <= self.workflow_arrival(arrival) + self.deadline_s))


def stage_deadlines(w: ServingWorkload) -> np.ndarray:
    """(R,) absolute deadline of every request's workflow (inf without workflows), of a ``ServingWorkload``."""
    if w.workflows is None:
        return np.full(w.n_requests, np.inf)
    wf = w.workflows
    return (wf.workflow_arrival(w.arrival) + wf.deadline_s)[wf.workflow]


class StageReleaser:
    """Which stages are released, in release order (``ClusterSim`` and the live driver, ``live_workflows.py``).
    ``arrival`` (the run's per-request arrival times) is updated in place with each stage's release time."""

    def __init__(self, w: ServingWorkload, arrival: Any) -> None:
        if w.workflows is None:
            raise ValueError(f"workload {w.name} has no workflows")
        self.arrival = arrival
        self.children = w.workflows.children()
        self.n_parents: list[int] = np.diff(w.workflows.parent_offsets).tolist()
        self.doomed = [False] * w.n_requests  # a parent was rejected
        self.ready = [(float(arrival[r]), r) for r in range(w.n_requests) if not self.n_parents[r]]
        heapq.heapify(self.ready)

    def finished(self, r: int, t: float) -> None:
        """Stage ``r`` finished at ``t`` (engine clock): its children lose a parent to wait for."""
        for c in self.children[r]:
            self._release(c, t)

    def _release(self, c: int, t: float) -> None:
        self.n_parents[c] -= 1
        if self.n_parents[c] == 0:
            self.arrival[c] = max(float(self.arrival[c]), t)
            heapq.heappush(self.ready, (float(self.arrival[c]), c))

    def pop(self, now: float) -> int | None:
        """The earliest released stage whose release time has come, if any."""
        if self.ready and self.ready[0][0] <= now:
            return heapq.heappop(self.ready)[1]
        return None

    def next_release(self) -> float:
        return self.ready[0][0] if self.ready else math.inf

    def reject(self, r: int) -> None:
        """Stage ``r`` was rejected: it never finishes, so its descendants are rejected too when released."""
        for c in self.children[r]:
            self.doomed[c] = True
            self._release(c, float(self.arrival[r]))


def text2sql_workload(source, rng: np.random.Generator, n_workflows: int, rate: float, k: int = 3,
                      deadline_range: tuple[float, float] = (5.0, 40.0)):
    """``n_workflows`` Text2SQL workflows arriving as a Poisson process of ``rate`` per second: schema linking,
    ``k`` parallel SQL candidates, one selection stage; lengths drawn from ``source``'s requests."""
    from schedgym.envs.serving.types import ServingWorkload

    if n_workflows < 1 or k < 1 or not rate > 0:
        raise ValueError(f"text2sql_workload: need n_workflows >= 1, k >= 1, rate > 0; got {n_workflows}, {k}, {rate}")
    lo, hi = deadline_range
    if not 0 < lo <= hi:
        raise ValueError(f"text2sql_workload: deadline_range must be 0 < lo <= hi, got {deadline_range}")
    S = k + 2
    t = np.cumsum(rng.exponential(1.0 / rate, n_workflows))
    rows = rng.integers(0, source.n_requests, n_workflows * S)
    parents, offsets = [], [0]
    for w in range(n_workflows):
        base = w * S
        stage_parents = [[]] + [[base]] * k + [list(range(base + 1, base + 1 + k))]
        for ps in stage_parents:
            parents += ps
            offsets.append(len(parents))
    wf = Workflows(np.repeat(np.arange(n_workflows), S), np.array(offsets), np.array(parents, np.int64),
                   rng.uniform(lo, hi, n_workflows))
    return ServingWorkload(f"text2sql-{n_workflows}x{S}@{rate:g}", np.repeat(t, S), source.prompt_tokens[rows],
                           source.output_tokens[rows], source="text2sql workflows over " + source.name,
                           workflows=wf)


def text2sql_preset(seed: int = 0):
    """The named preset: 300 Text2SQL workflows (5 stages each) at 3 workflows/s over the Azure conv 2023 test
    part's request lengths, deadlines uniform in 5..40 s."""
    from schedgym.envs.serving.datasets import part

    return text2sql_workload(part("azure-conv-2023", "test"), np.random.default_rng(seed), 300, 3.0)


WORKFLOW_PRESETS = {"text2sql": text2sql_preset}
