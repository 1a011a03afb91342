"""Independent validator of a provisioning episode: the allocation's cost and its serving episode's attainment.

It imports neither the env nor the simulator. From the problem and the ``ProvisioningSchedule`` it checks
that the allocation names the problem's GPU types, within ``max_per_type`` each and not empty, that the
serving log is for the problem's workload on exactly that cluster (one single-GPU instance of the model per
GPU, in type order, with the problem's engine and SLO), validates the serving log with the serving
validator (which recomputes every latency and the SLO attainment), recomputes the price from the catalog,
and returns the objective ``penalized_cost_per_hour``: the allocation's $/hour, plus the price of the
largest allocation (every type at its cap) when the attainment misses the target.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.provisioning.types import ProvisioningSchedule
from schedgym.envs.serving import catalog
from schedgym.envs.serving.validator import ScheduleError, validate_schedule


def penalty(problem: Any) -> float:
    """$/hour added when the target is missed: the largest allocation's price (so meeting it always wins)."""
    return float(sum(catalog.gpu(g).price_per_hour for g in problem.gpus) * problem.max_per_type)


def validate_provisioning(problem: Any, schedule: ProvisioningSchedule) -> dict[str, Any]:
    """Check ``schedule`` against ``problem``; return the objective and the serving metrics recomputed."""
    gpus = tuple(problem.gpus)
    counts = np.asarray(schedule.counts)
    if tuple(schedule.gpus) != gpus:
        raise ScheduleError(f"the allocation is over GPU types {list(schedule.gpus)}, the problem's are {list(gpus)}")
    if counts.shape != (len(gpus),) or not np.issubdtype(counts.dtype, np.integer):
        raise ScheduleError(f"counts must be ({len(gpus)},) integers, got {counts!r}")
    if (counts < 0).any() or (counts > problem.max_per_type).any() or counts.sum() == 0:
        raise ScheduleError(f"counts {counts.tolist()} must be in 0..{problem.max_per_type} each and not all zero")
    s = schedule.serving
    if s is None:
        raise ScheduleError("the allocation was never served (no serving log): the episode did not end")
    want = [f"{catalog.gpu(g).name}/{catalog.model(problem.model).name}/tp1"
            for g, n in zip(gpus, counts.tolist(), strict=True) for _ in range(n)]
    got = [spec.label for spec in s.cluster.instances]
    if got != want:
        raise ScheduleError(f"the serving log ran on {got}, but the allocation {counts.tolist()} is {want}")
    if s.cluster.engine != problem.engine or s.cluster.slo != problem.slo:
        raise ScheduleError("the serving log used another engine configuration or SLO than the problem's")
    if s.cluster.migration is not None or s.cluster.disagg is not None:
        raise ScheduleError("provisioning serves on a plain cluster (no migration, no disaggregation)")
    m = validate_schedule(problem.workload, s)
    cost = float(sum(n * catalog.gpu(g).price_per_hour for g, n in zip(gpus, counts.tolist(), strict=True)))
    meets = m["slo_attainment"] >= problem.target
    return {"penalized_cost_per_hour": cost if meets else cost + penalty(problem), "cost_per_hour": cost,
            "meets_target": float(meets), "slo_attainment": m["slo_attainment"], "p99_ttft": m["p99_ttft"],
            "p99_tpot": m["p99_tpot"], "n_rejected": m["n_rejected"], "n_gpus": float(counts.sum())}
