"""DAG-dispatch data: platform (processing elements), workload (DAG jobs), instance, schedule.

All are frozen dataclasses of numpy arrays, checked on construction; errors name the field, task or job.
Times are in the platform's ``time_unit``; data volumes in its ``data_unit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INF = float("inf")


class DagError(ValueError):
    """A platform, workload, instance or schedule is malformed; the message names the culprit."""


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Platform:
    """Heterogeneous processing elements (PEs) with a task-type x PE-type execution-time table.

    pe_names:        (P,) names of the PEs
    pe_type:         (P,) int64 — type of each PE, in 0..K-1
    pe_type_names:   (K,) names of the PE types
    task_type_names: (Y,) names of the task types the table knows
    exec_table:      (Y, K) float64 — time per unit of work of task type y on PE type k; ``inf`` = unsupported
    latency:         (P, P) float64 >= 0 — start-up latency of a transfer p -> q (ignored on the diagonal)
    bandwidth:       (P, P) float64 > 0 — data units per time unit p -> q (ignored on the diagonal)
    Moving ``d`` data units from p to q takes ``latency[p, q] + d / bandwidth[p, q]``; 0 when p == q.
    """

    name: str
    pe_names: tuple[str, ...]
    pe_type: np.ndarray
    pe_type_names: tuple[str, ...]
    task_type_names: tuple[str, ...]
    exec_table: np.ndarray
    latency: np.ndarray
    bandwidth: np.ndarray
    time_unit: str = "s"
    data_unit: str = "B"
    description: str = ""

    def __post_init__(self) -> None:
        p, k, y = len(self.pe_names), len(self.pe_type_names), len(self.task_type_names)
        if p < 1 or k < 1 or y < 1:
            raise DagError(f"platform {self.name}: needs >= 1 PE, PE type and task type (got {p}, {k}, {y})")
        pt = np.array(self.pe_type, dtype=np.int64)
        if pt.shape != (p,):
            raise DagError(f"platform {self.name}: pe_type must have shape ({p},), got {pt.shape}")
        if (pt < 0).any() or (pt >= k).any():
            bad = int(np.flatnonzero((pt < 0) | (pt >= k))[0])
            raise DagError(
                f"platform {self.name}: PE {self.pe_names[bad]!r} has type {pt[bad]}, expected 0..{k - 1}"
            )
        tab = np.array(self.exec_table, dtype=np.float64)
        if tab.shape != (y, k):
            raise DagError(
                f"platform {self.name}: exec_table must have shape ({y}, {k}) (task types x PE types), "
                f"got {tab.shape}"
            )
        if np.isnan(tab).any() or (tab < 0).any():
            r, c = np.argwhere(np.isnan(tab) | (tab < 0))[0]
            raise DagError(
                f"platform {self.name}: exec_table[{self.task_type_names[r]!r}, {self.pe_type_names[c]!r}]"
                f" = {tab[r, c]}; expected a time >= 0 or inf (unsupported)"
            )
        lat = np.array(self.latency, dtype=np.float64)
        bw = np.array(self.bandwidth, dtype=np.float64)
        for nm, arr in (("latency", lat), ("bandwidth", bw)):
            if arr.shape != (p, p):
                raise DagError(f"platform {self.name}: {nm} must have shape ({p}, {p}), got {arr.shape}")
        off = ~np.eye(p, dtype=bool)
        if np.isnan(lat).any() or (lat[off] < 0).any() or not np.isfinite(lat[off]).all():
            raise DagError(f"platform {self.name}: latency must be finite and >= 0 between distinct PEs")
        if np.isnan(bw).any() or (bw[off] <= 0).any():
            raise DagError(f"platform {self.name}: bandwidth must be > 0 between distinct PEs")
        lat[~off] = 0.0
        bw[~off] = INF
        for nm, val in (("pe_type", pt), ("exec_table", tab), ("latency", lat), ("bandwidth", bw)):
            object.__setattr__(self, nm, _frozen(val))
        for nm in ("pe_names", "pe_type_names", "task_type_names"):
            vals = tuple(getattr(self, nm))
            if len(set(vals)) != len(vals):
                raise DagError(f"platform {self.name}: {nm} has duplicates")
            object.__setattr__(self, nm, vals)

    @property
    def n_pes(self) -> int:
        return len(self.pe_names)

    @property
    def n_pe_types(self) -> int:
        return len(self.pe_type_names)

    def task_type_index(self, name: str) -> int:
        try:
            return self.task_type_names.index(name)
        except ValueError:
            raise DagError(
                f"platform {self.name} has no execution times for task type {name!r}; "
                f"known types: {list(self.task_type_names)}"
            ) from None

    def with_table(self, name: str, task_type_names: tuple[str, ...], exec_table: np.ndarray) -> Platform:
        """The same PEs and links with another task-type table (e.g. one derived for a workflow)."""
        return Platform(
            name,
            self.pe_names,
            self.pe_type,
            self.pe_type_names,
            tuple(task_type_names),
            exec_table,
            self.latency,
            self.bandwidth,
            self.time_unit,
            self.data_unit,
            self.description,
        )

    def __repr__(self) -> str:
        return f"Platform({self.name!r}, {self.n_pes} PEs, {self.n_pe_types} PE types)"


@dataclass(frozen=True, eq=False)
class DagWorkload:
    """DAG jobs, flattened: tasks of job j are contiguous and edges stay inside a job.

    job_names:   (J,) names; job_arrival: (J,) float64 >= 0 arrival times
    task_job:    (T,) int64 job of each task (non-decreasing)
    task_type:   (T,) str — task type names (looked up in the platform's table)
    work:        (T,) float64 >= 0 — multiplier of the platform's per-unit execution time
    edge_src, edge_dst: (E,) int64 global task ids, src -> dst (dst needs src's data)
    edge_data:   (E,) float64 >= 0 data volume moved along the edge
    task_names:  (T,) names for errors and charts
    """

    name: str
    job_names: tuple[str, ...]
    job_arrival: np.ndarray
    task_job: np.ndarray
    task_type: tuple[str, ...]
    work: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_data: np.ndarray
    task_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        j = len(self.job_names)
        arr = np.array(self.job_arrival, dtype=np.float64)
        tj = np.array(self.task_job, dtype=np.int64)
        w = np.array(self.work, dtype=np.float64)
        src = np.array(self.edge_src, dtype=np.int64).reshape(-1)
        dst = np.array(self.edge_dst, dtype=np.int64).reshape(-1)
        data = np.array(self.edge_data, dtype=np.float64).reshape(-1)
        t = tj.size
        names = tuple(self.task_names) or tuple(f"t{i}" for i in range(t))
        if j < 1 or t < 1:
            raise DagError(f"workload {self.name}: needs >= 1 job and >= 1 task (got {j} jobs, {t} tasks)")
        if arr.shape != (j,) or np.isnan(arr).any() or (arr < 0).any() or not np.isfinite(arr).all():
            raise DagError(f"workload {self.name}: job_arrival must be {j} finite times >= 0")
        if len(names) != t or len(self.task_type) != t or w.shape != (t,):
            raise DagError(
                f"workload {self.name}: task_names, task_type and work must each have {t} entries "
                f"(got {len(names)}, {len(self.task_type)}, {w.shape[0] if w.ndim else w.size})"
            )
        if (tj < 0).any() or (tj >= j).any() or (np.diff(tj) < 0).any():
            raise DagError(f"workload {self.name}: task_job must be non-decreasing job indices in 0..{j - 1}")
        missing = np.setdiff1d(np.arange(j), tj)
        if missing.size:
            raise DagError(f"workload {self.name}: job {self.job_names[missing[0]]!r} has no tasks")
        for i in np.flatnonzero(~np.isfinite(w) | (w < 0)):
            raise DagError(
                f"workload {self.name}: task {names[i]!r} has work {w[i]}; expected a finite number >= 0"
            )
        if not (src.shape == dst.shape == data.shape):
            raise DagError(
                f"workload {self.name}: edge_src, edge_dst, edge_data lengths differ "
                f"({src.size}, {dst.size}, {data.size})"
            )
        for e in range(src.size):
            s, d = int(src[e]), int(dst[e])
            if not (0 <= s < t and 0 <= d < t):
                raise DagError(
                    f"workload {self.name}: edge {e} ({s} -> {d}) refers to a task outside 0..{t - 1}"
                )
            if s == d:
                raise DagError(f"workload {self.name}: task {names[s]!r} depends on itself (cycle)")
            if tj[s] != tj[d]:
                raise DagError(f"workload {self.name}: edge {names[s]!r} -> {names[d]!r} joins two jobs")
            if not np.isfinite(data[e]) or data[e] < 0:
                raise DagError(
                    f"workload {self.name}: edge {names[s]!r} -> {names[d]!r} has data {data[e]}; "
                    f"expected a finite volume >= 0"
                )
        pairs = set(zip(src.tolist(), dst.tolist(), strict=False))
        if len(pairs) != src.size:
            raise DagError(f"workload {self.name}: duplicate edges")
        _topological_order(t, src, dst, names, self.name)  # raises on cycles
        for nm, a in (
            ("job_arrival", arr),
            ("task_job", tj),
            ("work", w),
            ("edge_src", src),
            ("edge_dst", dst),
            ("edge_data", data),
        ):
            object.__setattr__(self, nm, _frozen(a))
        object.__setattr__(self, "task_names", names)
        object.__setattr__(self, "task_type", tuple(self.task_type))
        object.__setattr__(self, "job_names", tuple(self.job_names))

    @property
    def n_jobs(self) -> int:
        return len(self.job_names)

    @property
    def n_tasks(self) -> int:
        return int(self.task_job.size)

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.size)

    def __repr__(self) -> str:
        return f"DagWorkload({self.name!r}, {self.n_jobs} jobs, {self.n_tasks} tasks, {self.n_edges} edges)"


def _topological_order(
    t: int, src: np.ndarray, dst: np.ndarray, names: tuple[str, ...], where: str
) -> np.ndarray:
    """Kahn's algorithm (smallest id first); a cycle raises naming a task on it."""
    import heapq

    indeg = np.bincount(dst, minlength=t).tolist()
    children: list[list[int]] = [[] for _ in range(t)]
    for s, d in zip(src.tolist(), dst.tolist(), strict=False):
        children[s].append(d)
    heap = [i for i in range(t) if indeg[i] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for c in children[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(heap, c)
    if len(order) < t:
        left = [i for i in range(t) if indeg[i] > 0]
        # Walk back along unresolved parents until a task repeats: that task lies on a cycle.
        parents: dict[int, int] = {}
        for s, d in zip(src.tolist(), dst.tolist(), strict=False):
            if indeg[s] > 0 and indeg[d] > 0:
                parents.setdefault(d, s)
        seen: set[int] = set()
        i = left[0]
        while i not in seen:
            seen.add(i)
            i = parents[i]
        raise DagError(f"{where}: the task graph has a cycle through task {names[i]!r}")
    return np.asarray(order, np.int64)


@dataclass(frozen=True, eq=False)
class DagInstance:
    """A workload on a platform: what an episode schedules. Derived tables are computed once here.

    exec_time:   (T, P) float64 — expected execution time of each task on each PE (``inf`` = unsupported)
    type_time:   (T, K) float64 — the same per PE type
    parent_ptr, parent_task, parent_edge: CSR of each task's incoming edges
    child_ptr, child_task, child_edge:    CSR of each task's outgoing edges
    topo_order:  (T,) int64 a topological order of all tasks
    cp_lower:    (J,) float64 — each job's critical path with every task on its fastest PE and no
                 communication: the denominator of the job slowdown
    best_known:  optional best-known makespan (for gaps)
    """

    name: str
    platform: Platform
    workload: DagWorkload
    best_known: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pf, wl = self.platform, self.workload
        type_idx = np.array([pf.task_type_index(y) for y in sorted(set(wl.task_type))], np.int64)
        lookup = dict(zip(sorted(set(wl.task_type)), type_idx.tolist(), strict=False))
        ty = np.array([lookup[y] for y in wl.task_type], np.int64)
        table = pf.exec_table[ty]  # (T, K)
        unsupported = np.isinf(table)
        type_time = np.where(unsupported, INF, wl.work[:, None] * np.where(unsupported, 0.0, table))
        exec_time = type_time[:, pf.pe_type]
        for i in np.flatnonzero(np.isinf(exec_time).all(axis=1)):
            raise DagError(
                f"instance {self.name}: task {wl.task_names[i]!r} (type {wl.task_type[i]!r}) is supported "
                f"by no PE of platform {pf.name}"
            )
        t = wl.n_tasks
        order = _topological_order(t, wl.edge_src, wl.edge_dst, wl.task_names, self.name)
        p_ptr, p_task, p_edge = _csr(t, wl.edge_dst, wl.edge_src)
        c_ptr, c_task, c_edge = _csr(t, wl.edge_src, wl.edge_dst)
        fastest = exec_time.min(axis=1)
        longest = np.zeros(t)
        for i in order.tolist():
            a, b = p_ptr[i], p_ptr[i + 1]
            longest[i] = fastest[i] + (longest[p_task[a:b]].max() if b > a else 0.0)
        cp = np.zeros(wl.n_jobs)
        np.maximum.at(cp, wl.task_job, longest)
        cp = np.maximum(cp, 1e-12)  # jobs of zero-time tasks: avoid dividing by zero
        vals = {
            "task_type_id": ty,
            "type_time": type_time,
            "exec_time": exec_time,
            "topo_order": order,
            "parent_ptr": p_ptr,
            "parent_task": p_task,
            "parent_edge": p_edge,
            "child_ptr": c_ptr,
            "child_task": c_task,
            "child_edge": c_edge,
            "cp_lower": cp,
        }
        for k, v in vals.items():
            object.__setattr__(self, k, _frozen(np.ascontiguousarray(v)))

    # Derived arrays, set in __post_init__ (declared for type checkers).
    task_type_id: np.ndarray = field(init=False, repr=False)
    type_time: np.ndarray = field(init=False, repr=False)
    exec_time: np.ndarray = field(init=False, repr=False)
    topo_order: np.ndarray = field(init=False, repr=False)
    parent_ptr: np.ndarray = field(init=False, repr=False)
    parent_task: np.ndarray = field(init=False, repr=False)
    parent_edge: np.ndarray = field(init=False, repr=False)
    child_ptr: np.ndarray = field(init=False, repr=False)
    child_task: np.ndarray = field(init=False, repr=False)
    child_edge: np.ndarray = field(init=False, repr=False)
    cp_lower: np.ndarray = field(init=False, repr=False)

    @property
    def n_tasks(self) -> int:
        return self.workload.n_tasks

    @property
    def n_jobs(self) -> int:
        return self.workload.n_jobs

    @property
    def n_pes(self) -> int:
        return self.platform.n_pes

    def job_tasks(self, j: int) -> range:
        """Global ids of job j's tasks (contiguous)."""
        tj = self.workload.task_job
        return range(int(np.searchsorted(tj, j, "left")), int(np.searchsorted(tj, j, "right")))

    def mean_exec_time(self) -> np.ndarray:
        """(T,) mean expected run time of each task over the PEs that support it (HEFT's w-bar)."""
        finite = np.isfinite(self.exec_time)
        return np.where(finite, self.exec_time, 0.0).sum(1) / finite.sum(1)

    def mean_comm_time(self) -> np.ndarray:
        """(E,) mean transfer time of each edge over ordered pairs of distinct PEs (HEFT's c-bar):
        mean latency + data * mean(1 / bandwidth); 0 on a single-PE platform."""
        p = self.n_pes
        if p < 2:
            return np.zeros(self.workload.n_edges)
        off = ~np.eye(p, dtype=bool)
        pf = self.platform
        return pf.latency[off].mean() + self.workload.edge_data * (1.0 / pf.bandwidth[off]).mean()

    def upward_rank(self) -> np.ndarray:
        """(T,) HEFT's rank_u on the whole instance: mean run time + the longest mean-cost path to an exit."""
        rank = self.mean_exec_time()
        comm = self.mean_comm_time().tolist()
        ptr, child, cedge = self.child_ptr.tolist(), self.child_task.tolist(), self.child_edge.tolist()
        for i in self.topo_order[::-1].tolist():
            rank[i] += max((comm[cedge[k]] + rank[child[k]] for k in range(ptr[i], ptr[i + 1])), default=0.0)
        return rank

    def comm_time(self, p: int, q: int, data: float) -> float:
        """Time to move ``data`` from PE p to PE q (0 on the same PE)."""
        if p == q:
            return 0.0
        pf = self.platform
        return float(pf.latency[p, q] + data / pf.bandwidth[p, q])

    def __repr__(self) -> str:
        return (
            f"DagInstance({self.name!r}, {self.n_jobs} jobs, {self.n_tasks} tasks on {self.platform.name} "
            f"({self.n_pes} PEs))"
        )


def _csr(n: int, key: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ptr, val[sorted], edge ids[sorted]) grouping edges by ``key`` (stable, so file order is kept)."""
    order = np.argsort(key, kind="stable")
    ptr = np.zeros(n + 1, np.int64)
    np.add.at(ptr, key + 1, 1)
    return np.cumsum(ptr), val[order].astype(np.int64), order.astype(np.int64)


@dataclass(frozen=True, eq=False)
class DagSchedule:
    """What a policy produced: the PE and the actual start/finish of every task.

    pe:     (T,) int64 PE of each task (-1 = never placed)
    start:  (T,) float64 actual start times
    finish: (T,) float64 actual finish times
    noise:  (T,) float64 multiplicative runtime factor applied to each task (1.0 without noise):
            ``finish = start + exec_time[task, pe] * noise``
    """

    instance_name: str
    pe: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    noise: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; unknown times (tasks not started) are ``None``, as JSON has no NaN."""

        def times(a: np.ndarray) -> list[float | None]:
            return [None if np.isnan(x) else x for x in a.tolist()]

        return {
            "instance": self.instance_name,
            "pe": self.pe.tolist(),
            "start": times(self.start),
            "finish": times(self.finish),
            "noise": self.noise.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DagSchedule:
        try:

            def times(v: list[float | None]) -> np.ndarray:
                return np.array([np.nan if x is None else x for x in v], np.float64)

            return cls(
                str(d["instance"]),
                np.asarray(d["pe"], np.int64),
                times(d["start"]),
                times(d["finish"]),
                np.asarray(d["noise"], np.float64),
            )
        except KeyError as e:
            raise DagError(f"schedule JSON lacks the field {e.args[0]!r}") from None
