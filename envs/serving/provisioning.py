"""Heterogeneous provisioning (Mélange): how many GPUs of each type to run for a trace and an SLO, and its cost.

A ``ProvisioningProblem`` names a workload, a model, the candidate GPU types (each with its $/hour from the
catalog), a per-type cap, the SLO and the attainment target. ``evaluate`` runs one allocation (a count per
type; one single-GPU instance per GPU) through the simulator with a load-aware router and returns its
validated SLO attainment and cost per hour; ``solve`` enumerates the allocations in increasing cost and
returns the cheapest that meets the target, plus the cheapest single-type allocation of each type, so the
saving of mixing types is measured, not assumed.

The router (``speed_weighted_jsq``) sends a request to the instance with the fewest outstanding requests per
unit of memory bandwidth (decode speed), breaking ties by index: heterogeneous pools need capacity-aware
dispatch, or a cheap slow GPU gets as many requests as a fast one.

Source: T. Griggs et al., "Mélange: Cost Efficient Large Language Model Serving by Exploiting GPU
Heterogeneity", arXiv:2404.14527 (2024): mixed GPU types serve mixed request sizes cheaper than any one type.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schedgym.envs.serving import catalog
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import SLO, ClusterSpec, EngineConfig, InstanceSpec, ServingWorkload
from schedgym.envs.serving.validator import validate_schedule


@dataclass(frozen=True)
class ProvisioningProblem:
    """What to provision for: requests, model, candidate GPU types (``catalog``), at most ``max_per_type`` each."""

    workload: ServingWorkload
    model: str
    gpus: tuple[str, ...]
    max_per_type: int = 4
    slo: SLO = field(default_factory=SLO)
    target: float = 0.9
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if not self.gpus:
            raise ValueError("provisioning needs at least one GPU type")
        object.__setattr__(self, "gpus", tuple(catalog.gpu(g).name for g in self.gpus))
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"GPU types must be distinct, got {list(self.gpus)}")
        catalog.model(self.model)
        if not isinstance(self.max_per_type, (int, np.integer)) or self.max_per_type < 1:
            raise ValueError(f"max_per_type must be an integer >= 1, got {self.max_per_type!r}")
        if not 0 < self.target <= 1:
            raise ValueError(f"target SLO attainment must be in (0, 1], got {self.target}")

    @property
    def name(self) -> str:
        return f"{self.workload.name}|{self.model}|{'+'.join(self.gpus)}|target{self.target:g}"

    @property
    def best_known(self) -> None:
        return None

    def price(self, counts: tuple[int, ...]) -> float:
        """$/hour of an allocation."""
        return float(sum(n * catalog.gpu(g).price_per_hour for g, n in zip(self.gpus, counts, strict=True)))


def cluster_for(p: ProvisioningProblem, counts: tuple[int, ...]) -> ClusterSpec:
    """The cluster of an allocation: ``counts[k]`` single-GPU instances of ``p.gpus[k]``, in type order."""
    if len(counts) != len(p.gpus) or any(n < 0 for n in counts) or sum(counts) == 0:
        raise ValueError(f"allocation {counts}: expected {len(p.gpus)} counts >= 0 (for {list(p.gpus)}), "
                         "not all zero")
    specs = [InstanceSpec(g, p.model) for g, n in zip(p.gpus, counts, strict=True) for _ in range(n)]
    return ClusterSpec(tuple(specs), p.engine, p.slo)


def speed_weighted_jsq(sim: ClusterSim, r: int, speed: np.ndarray) -> int:
    """Feasible instance with the fewest outstanding requests per unit of decode speed (lowest index on ties)."""
    score = np.where(sim.feasible[r], (sim.outstanding() + 1) / speed, np.inf)
    return int(np.argmin(score))


def serve(p: ProvisioningProblem, counts: tuple[int, ...]) -> ClusterSim:
    """Simulate the workload on the allocation, routed by ``speed_weighted_jsq``, until it drains."""
    cluster = cluster_for(p, counts)
    sim = ClusterSim.build(p.workload, cluster)
    speed = np.array([catalog.gpu(s.gpu).hbm_bw for s in cluster.instances])
    while (r := sim.next_decision()) is not None:
        sim.route(r, speed_weighted_jsq(sim, r, speed))
    sim.drain()
    return sim


def evaluate(p: ProvisioningProblem, counts: tuple[int, ...]) -> dict[str, Any]:
    """Run the workload on the allocation; its validated SLO attainment, p99 TTFT/TPOT and $/hour."""
    m = validate_schedule(p.workload, serve(p, counts).schedule())
    return {"counts": tuple(counts), "cost_per_hour": p.price(counts), "slo_attainment": m["slo_attainment"],
            "p99_ttft": m["p99_ttft"], "p99_tpot": m["p99_tpot"], "n_rejected": m["n_rejected"],
            "meets_target": m["slo_attainment"] >= p.target}


@dataclass
class ProvisionResult:
    """The cheapest allocation meeting the target (``None`` if none within the caps) and per-type bests."""

    best: dict[str, Any] | None
    best_single: dict[str, dict[str, Any] | None]
    evaluated: list[dict[str, Any]]

    def table(self, gpus: tuple[str, ...]) -> str:
        lines = [f"{'allocation':<60}{'$/hour':>9}{'SLO att.':>10}{'p99 TTFT':>10}{'p99 TPOT':>10}"]

        def row(tag: str, e: dict[str, Any] | None) -> None:
            if e is None:
                lines.append(f"{tag:<60}{'none within the caps meets the target':>49}")
                return
            alloc = " + ".join(f"{n}x{g}" for g, n in zip(gpus, e["counts"], strict=True) if n)
            lines.append(f"{tag + ': ' + alloc:<60}{e['cost_per_hour']:>9.2f}{e['slo_attainment']:>10.3f}"
                         f"{e['p99_ttft']:>10.3f}{e['p99_tpot']:>10.4f}")

        for g, e in self.best_single.items():
            row(f"only {g}", e)
        row("cheapest (mixed allowed)", self.best)
        return "\n".join(lines)


def solve(p: ProvisioningProblem) -> ProvisionResult:
    """Cheapest allocation meeting the target, by evaluating allocations in increasing cost (stops at the first
    that meets it), and the cheapest single-type allocation of each type."""
    allocs = [c for c in itertools.product(range(p.max_per_type + 1), repeat=len(p.gpus)) if sum(c)]
    allocs.sort(key=lambda c: (p.price(c), sum(c), c))
    evaluated: list[dict[str, Any]] = []
    cache: dict[tuple[int, ...], dict[str, Any]] = {}

    def ev(c: tuple[int, ...]) -> dict[str, Any]:
        if c not in cache:
            cache[c] = evaluate(p, c)
            evaluated.append(cache[c])
        return cache[c]

    best_single: dict[str, dict[str, Any] | None] = {}
    for k, g in enumerate(p.gpus):
        best_single[g] = None
        for n in range(1, p.max_per_type + 1):
            c = tuple(n if j == k else 0 for j in range(len(p.gpus)))
            if ev(c)["meets_target"]:
                best_single[g] = cache[c]
                break
    bound = min((e["cost_per_hour"] for e in best_single.values() if e), default=math.inf)
    best = None
    for c in allocs:
        if p.price(c) > bound:
            break  # a single-type allocation at this cost already meets the target
        if ev(c)["meets_target"]:
            best = cache[c]
            break
    if best is None and bound < math.inf:
        best = min((e for e in best_single.values() if e), key=lambda e: e["cost_per_hour"])
    return ProvisionResult(best, best_single, evaluated)


def melange_problem() -> ProvisioningProblem:
    """The named preset: 800 requests of the Azure conv 2023 test part at x16 (mixed prompt and output lengths),
    Llama-3-8B on L4 / A10G / A100-80GB / H100-80GB (at most 4 of each), SLO 2 s TTFT and 100 ms TPOT, target
    90 % attainment."""
    from schedgym.envs.serving.datasets import part

    w = part("azure-conv-2023", "test").slice(0, 800).scaled(16.0)
    return ProvisioningProblem(w, "Llama-3-8B", ("L4", "A10G", "A100-80GB", "H100-80GB"), max_per_type=4,
                               slo=SLO((2.0,), (0.1,)), target=0.9)


PROVISIONING_PRESETS = {"melange": melange_problem}
