"""Seeded workload generators: random DAG shapes, batches and Poisson job streams (rng in, data out).

Shapes (one job each; ``n`` tasks exactly):

- ``layered``: Topcuoglu et al.'s random-DAG scheme: ``round(sqrt(n))`` levels of random widths; every
  task below the first level gets 1-3 parents, one of them in the level just above.
- ``forkjoin``: repeated fork-join stages (one task fans out to 2..6 parallel tasks that join again).
- ``chain``: a single chain.
- ``sp``: random two-terminal series-parallel graph (recursive series / parallel composition).

Task types are drawn from the platform's mix (``platforms.TYPE_MIX``), work ~ U[0.5, 1.5]. Edge data is set
from the communication-to-computation ratio ``ccr``:
``data = ccr * mean_time(src) / mean_inv_bw * U[0.5, 1.5]``
so an average transfer takes about ``ccr`` times its producer's average run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from schedgym.envs.dag.platforms import TYPE_MIX, mean_comm
from schedgym.envs.dag.types import DagInstance, DagWorkload, Platform

SHAPES = ("layered", "forkjoin", "chain", "sp")
MAX_PARENTS = 3


def max_edges(shape: str, n: int) -> int:
    """Upper bound on the edges of a generated ``shape`` job with ``n`` tasks (for padding)."""
    if shape == "layered":
        return MAX_PARENTS * n
    if shape == "chain":
        return max(0, n - 1)
    if shape in ("forkjoin", "sp"):
        return 2 * n
    raise ValueError(f"unknown DAG shape {shape!r}; expected one of {SHAPES}")


def random_edges(rng: np.random.Generator, shape: str, n: int) -> list[tuple[int, int]]:
    """Edges (src, dst) of a random ``shape`` DAG on tasks 0..n-1 (src < dst: ids are topological)."""
    if n < 1:
        raise ValueError(f"a DAG needs n >= 1 tasks, got {n}")
    if shape == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if shape == "layered":
        return _layered(rng, n)
    if shape == "forkjoin":
        return _forkjoin(rng, n)
    if shape == "sp":
        edges: list[tuple[int, int]] = []
        _sp(rng, 0, n, edges)
        return edges
    raise ValueError(f"unknown DAG shape {shape!r}; expected one of {SHAPES}")


def _layered(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    n_levels = min(n, max(1, int(round(np.sqrt(n)))))
    cuts = (
        np.sort(rng.choice(np.arange(1, n), size=n_levels - 1, replace=False))
        if n_levels > 1
        else np.array([], int)
    )
    bounds = [0, *cuts.tolist(), n]
    edges = []
    for lv in range(1, n_levels):
        prev_lo, lo, hi = bounds[lv - 1], bounds[lv], bounds[lv + 1]
        for t in range(lo, hi):
            k = int(rng.integers(1, min(MAX_PARENTS, lo) + 1))
            first = int(rng.integers(prev_lo, lo))  # one parent from the level above keeps the depth
            others = rng.choice(lo, size=k, replace=False).tolist()
            parents = list(dict.fromkeys([first] + [p for p in others if p != first]))[:k]
            edges += [(p, t) for p in sorted(parents)]
    return edges


def _forkjoin(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    edges, head, t = [], 0, 1
    while t < n:
        width = min(int(rng.integers(2, 7)), n - t)
        branch = list(range(t, t + width))
        edges += [(head, b) for b in branch]
        t += width
        if t >= n:
            break
        edges += [(b, t) for b in branch]
        head, t = t, t + 1
    return edges


def _sp(rng: np.random.Generator, lo: int, n: int, edges: list[tuple[int, int]]) -> tuple[int, int]:
    """Build an SP block on tasks lo..lo+n-1; return its (source, sink)."""
    if n == 1:
        return lo, lo
    if n == 2 or rng.random() < 0.5:
        a = int(rng.integers(1, n))  # series: block(a) -> block(n - a)
        s1, t1 = _sp(rng, lo, a, edges)
        s2, t2 = _sp(rng, lo + a, n - a, edges)
        edges.append((t1, s2))
        return s1, t2
    # parallel: fork task lo, k branches, join task lo+n-1
    inner = n - 2
    k = int(rng.integers(1, min(4, inner) + 1))
    sizes = (
        np.diff(np.r_[0, np.sort(rng.choice(np.arange(1, inner), size=k - 1, replace=False)), inner])
        if k > 1
        else np.array([inner])
    )
    start = lo + 1
    for size in sizes.tolist():
        s, t = _sp(rng, start, size, edges)
        edges += [(lo, s), (t, lo + n - 1)]
        start += size
    return lo, lo + n - 1


def random_job(
    rng: np.random.Generator, platform: Platform, shape: str, n: int, ccr: float = 0.5, name: str = "job"
) -> DagWorkload:
    """One random DAG job of ``n`` tasks for ``platform`` (arrival 0)."""
    if ccr < 0:
        raise ValueError(f"ccr must be >= 0, got {ccr}")
    edges = sorted(random_edges(rng, shape, n))
    mix = TYPE_MIX.get(platform.name)
    names = list(mix) if mix else list(platform.task_type_names)
    probs = np.array(list(mix.values())) if mix else np.full(len(names), 1.0 / len(names))
    types = [names[i] for i in rng.choice(len(names), size=n, p=probs / probs.sum())]
    work = rng.uniform(0.5, 1.5, size=n)
    tab = platform.exec_table[[platform.task_type_index(y) for y in types]][:, platform.pe_type]
    mean_time = np.array([row[np.isfinite(row)].mean() for row in tab]) * work
    _, inv_bw = mean_comm(platform)
    src = np.array([e[0] for e in edges], np.int64)
    dst = np.array([e[1] for e in edges], np.int64)
    scale = ccr * mean_time[src] / inv_bw if inv_bw > 0 else np.zeros(len(edges))
    data = np.round(scale * rng.uniform(0.5, 1.5, size=len(edges)), 3)
    return DagWorkload(
        name,
        (name,),
        np.zeros(1),
        np.zeros(n, np.int64),
        tuple(types),
        work,
        src,
        dst,
        data,
        tuple(f"{name}.t{i}" for i in range(n)),
    )


def combine(name: str, jobs: Sequence[DagWorkload], arrivals: Sequence[float] | np.ndarray) -> DagWorkload:
    """Concatenate jobs (each may hold several) into one workload; job k arrives at arrivals[k]."""
    if len(jobs) != len(arrivals):
        raise ValueError(f"{len(jobs)} jobs but {len(arrivals)} arrival times")
    job_names, arr, tj, types, work, src, dst, data, tnames = [], [], [], [], [], [], [], [], []
    offset_t = offset_j = 0
    for w, a in zip(jobs, arrivals, strict=False):
        job_names += [f"{n}#{offset_j + i}" if len(jobs) > 1 else n for i, n in enumerate(w.job_names)]
        arr += (w.job_arrival + float(a)).tolist()
        tj.append(w.task_job + offset_j)
        types += list(w.task_type)
        work.append(w.work)
        src.append(w.edge_src + offset_t)
        dst.append(w.edge_dst + offset_t)
        data.append(w.edge_data)
        tnames += [
            f"{n}#{offset_j + j}" if len(jobs) > 1 else n
            for n, j in zip(w.task_names, w.task_job.tolist(), strict=False)
        ]
        offset_t += w.n_tasks
        offset_j += w.n_jobs
    return DagWorkload(
        name,
        tuple(job_names),
        np.array(arr),
        np.concatenate(tj),
        tuple(types),
        np.concatenate(work),
        np.concatenate(src),
        np.concatenate(dst),
        np.concatenate(data),
        tuple(tnames),
    )


def poisson_arrivals(rng: np.random.Generator, n_jobs: int, mean_interarrival: float) -> np.ndarray:
    """Arrival times of a Poisson process (first job at 0), as in DS3's exponential inter-arrival times."""
    if n_jobs < 1 or not mean_interarrival > 0:
        raise ValueError(f"need n_jobs >= 1 and mean_interarrival > 0, got {n_jobs}, {mean_interarrival}")
    gaps = rng.exponential(mean_interarrival, size=n_jobs - 1)
    return np.r_[0.0, np.cumsum(gaps)]


def mean_work_per_pe(platform: Platform, job: DagWorkload) -> float:
    """A job's total average execution time (over supporting PEs) divided by the number of PEs."""
    tab = platform.exec_table[[platform.task_type_index(y) for y in job.task_type]][:, platform.pe_type]
    mean_time = np.array([row[np.isfinite(row)].mean() for row in tab]) * job.work
    return float(mean_time.sum()) / platform.n_pes


def stream(
    rng: np.random.Generator,
    platform: Platform,
    sample_job: Callable[[np.random.Generator, int], DagWorkload],
    n_jobs: int,
    load: float,
    name: str,
) -> DagInstance:
    """``n_jobs`` jobs from ``sample_job(rng, k)`` arriving as a Poisson process at offered ``load``.

    The mean inter-arrival time is (mean over the drawn jobs of their average work per PE) / ``load``, so
    ``load`` is the fraction of the platform the stream would keep busy with perfect balance.
    """
    if not load > 0:
        raise ValueError(f"load must be > 0, got {load}")
    jobs = [sample_job(rng, k) for k in range(n_jobs)]
    mean_gap = float(np.mean([mean_work_per_pe(platform, j) for j in jobs])) / load
    arrivals = poisson_arrivals(rng, n_jobs, max(mean_gap, 1e-12))
    return DagInstance(
        name, platform, combine(name, jobs, arrivals), meta={"load": load, "mean_gap": mean_gap}
    )


def random_instance(
    rng: np.random.Generator,
    platform: Platform,
    shape: str,
    n: int,
    n_jobs: int = 1,
    load: float = 0.7,
    ccr: float = 0.5,
    name: str | None = None,
) -> DagInstance:
    """``n_jobs`` random ``shape`` jobs of ``n`` tasks: one batch job, or a Poisson stream when n_jobs > 1."""
    name = name or f"random-{shape}-{n}"
    if n_jobs == 1:
        return DagInstance(name, platform, random_job(rng, platform, shape, n, ccr, name))
    return stream(
        rng, platform, lambda r, k: random_job(r, platform, shape, n, ccr, f"{shape}{n}"), n_jobs, load, name
    )


def poisson_from_set(
    rng: np.random.Generator,
    platform: Platform,
    jobs: Sequence[DagWorkload],
    n_jobs: int,
    load: float,
    name: str,
    probs: Sequence[float] | None = None,
) -> DagInstance:
    """``n_jobs`` jobs drawn from ``jobs`` (uniformly, or with ``probs``) arriving as a Poisson process at
    offered ``load`` (DS3's application mix, e.g. WiFi TX:RX = 0.8:0.2)."""
    if not jobs:
        raise ValueError("poisson_from_set needs at least one job to draw from")
    p = None if probs is None else np.asarray(probs, float) / np.sum(probs)
    if p is not None and p.shape != (len(jobs),):
        raise ValueError(f"probs has {p.size} entries for {len(jobs)} jobs")
    return stream(rng, platform, lambda r, k: jobs[int(r.choice(len(jobs), p=p))], n_jobs, load, name)
