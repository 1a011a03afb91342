"""LLMServing swap cost (FastSwitch): a slower effective swap link shows in the TPOT tail of a preemption-heavy
load, swapped KV is conserved (validator), the TTFT fairness metric, and bad swap settings are rejected."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.effects import run_policy
from schedgym.envs.serving.metrics import _jain
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import START_SWAP_IN, ClusterSpec, EngineConfig
from schedgym.envs.serving.validator import ScheduleError, validate_schedule

SMALL = {"gpu_memory_utilization": 0.3, "preemption": "swap"}


def test_swap_overhead_shows_in_tpot_tail() -> None:
    conv = part("azure-conv-2023", "test")
    kw = dict(cluster="h100-4", rate_scale=12.0)
    free, _ = run_policy(conv, "jsq", 0, engine={**SMALL, "swap_bw_gbps": 1e4}, **kw)
    slow, _ = run_policy(conv, "jsq", 0, engine={**SMALL, "swap_bw_gbps": 1.0}, **kw)
    assert free["preemptions"] > 50 and slow["preemptions"] > 50
    assert slow["p99_tpot"] > 1.1 * free["p99_tpot"] and slow["mean_ttft"] > free["mean_ttft"]
    assert 0 < slow["ttft_jain_fairness"] <= 1


def test_validator_checks_swapped_kv_is_conserved() -> None:
    w = part("azure-conv-2023", "test").slice(0, 400).scaled(12.0)
    sim = ClusterSim.build(w, ClusterSpec(("H100-80GB/Llama-3-8B",), EngineConfig(**SMALL)))
    while (r := sim.next_decision()) is not None:
        sim.route(r, 0)
    sim.drain()
    s = sim.schedule()
    validate_schedule(w, s)
    j = np.flatnonzero(s.res_start_kind == START_SWAP_IN)
    assert j.size
    kv = s.res_kv_start.copy()
    kv[j[0]] -= 16
    with pytest.raises(ScheduleError, match="conserve"):
        validate_schedule(w, replace(s, res_kv_start=kv))


def test_jain_index() -> None:
    assert _jain(np.array([2.0, 2.0, 2.0])) == pytest.approx(1.0)
    assert _jain(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(0.25)


@pytest.mark.parametrize("bw", [0.0, -1.0, float("inf")])
def test_bad_swap_bandwidth_is_rejected(bw) -> None:
    with pytest.raises(ValueError, match="swap_bw_gbps"):
        EngineConfig(swap_bw_gbps=bw)


def test_validator_recomputes_the_swap_transfer_time() -> None:
    """The log's iterations must carry the swap traffic at the configured bandwidth: the same log claimed at
    a 100x slower link is rejected, and the reported swap time is blocks x block bytes / bandwidth."""
    from schedgym.envs.serving.cluster import instance_plan

    w = part("azure-conv-2023", "test").slice(0, 400).scaled(12.0)
    cfg = EngineConfig(**SMALL, swap_bw_gbps=8.0)
    sim = ClusterSim.build(w, ClusterSpec(("H100-80GB/Llama-3-8B",), cfg))
    while (r := sim.next_decision()) is not None:
        sim.route(r, 0)
    sim.drain()
    s = sim.schedule()
    m = validate_schedule(w, s)
    plan = instance_plan(s.cluster.instances[0], cfg)
    j = np.flatnonzero(s.res_start_kind == START_SWAP_IN)
    # Every swap-in brings back exactly what its swap-out took: the traffic is twice the swapped-in blocks.
    blocks = 2 * (-(-s.res_kv_start[j] // 16)).sum()
    assert m["swap_time_s"] == pytest.approx(blocks * plan.block_bytes / 8e9)
    slow = replace(s, cluster=replace(s.cluster, engine=replace(cfg, swap_bw_gbps=0.08)))
    with pytest.raises(ScheduleError, match="swap transfer"):
        validate_schedule(w, slow)
