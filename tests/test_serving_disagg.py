"""LLMServing disaggregated prefill/decode (DistServe/Splitwise): goodput per GPU at tight SLOs on a
prefill-heavy trace, the routing mask, the validator's hand-off invariants, and bad configurations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.effects import run_policy
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import END_MIGRATE_OUT, START_MIGRATE_IN, ClusterSpec
from schedgym.envs.serving.validator import ScheduleError, validate_schedule

H4 = ("H100-80GB/Llama-3-8B",) * 4
TIGHT = {"ttft_s": [1.0], "tpot_s": [0.05]}


def test_disaggregation_raises_goodput_per_gpu_on_prefill_heavy_trace() -> None:
    code = part("azure-code-2023", "test")
    colo, _ = run_policy(code, "jsq", 0, cluster=list(H4), rate_scale=4.0, slo=TIGHT)
    dis, _ = run_policy(code, "jsq", 0, cluster=list(H4), rate_scale=4.0, slo=TIGHT, disagg="3p1d")
    assert dis["goodput_rps"] > 1.1 * colo["goodput_rps"]
    assert dis["p99_tpot"] < colo["p99_tpot"]  # decodes no longer stall behind prefills
    assert dis["migrations"] > 0  # one KV hand-off per request with more than one output token


@pytest.fixture(scope="module")
def disagg_sim() -> ClusterSim:
    w = part("azure-code-2023", "test").slice(0, 200).scaled(4.0)
    sim = ClusterSim.build(w, ClusterSpec(H4, disagg="2p2d"))
    assert not sim.feasible[:, 2:].any() and sim.feasible[:, :2].any()
    k = 0
    while (r := sim.next_decision()) is not None:
        sim.route(r, k % 2 if sim.feasible[r, k % 2] else 1 - k % 2)
        k += 1
    sim.drain()
    return sim


def test_hand_offs_validate_and_move_every_multi_token_request(disagg_sim: ClusterSim) -> None:
    s = disagg_sim.schedule()
    validate_schedule(s.workload, s)
    multi = np.flatnonzero((s.instance >= 0) & (s.workload.output_tokens > 1))
    moved = np.unique(s.res_request[s.res_start_kind == START_MIGRATE_IN])
    assert set(multi.tolist()) <= set(moved.tolist())
    assert (s.res_instance[s.res_end_kind == END_MIGRATE_OUT] < 2).all()  # only the prefill pool hands off


def test_validator_rejects_decoding_on_the_prefill_pool(disagg_sim: ClusterSim) -> None:
    s = disagg_sim.schedule()
    j = int(np.flatnonzero(s.res_start_kind == START_MIGRATE_IN)[0])
    inst = s.res_instance.copy()
    inst[j] = 1 - inst[j - 1] if inst[j - 1] < 2 else 0  # claim the decode happened on a prefill instance
    with pytest.raises(ScheduleError):
        validate_schedule(s.workload, replace(s, res_instance=inst))
    routed = s.instance.copy()
    routed[int(np.flatnonzero(routed >= 0)[0])] = 3
    with pytest.raises(ScheduleError, match="prefill pool"):
        validate_schedule(s.workload, replace(s, instance=routed))


@pytest.mark.parametrize("kw,match", [
    (dict(disagg="4p0d"), "unknown disaggregation preset"),
    (dict(disagg={"n_prefill": 4}), "no decode instance"),
    (dict(disagg={"n_prefill": 0}), "n_prefill"),
    (dict(disagg={"n_prefill": 1, "link_gbps": 0}), "link_gbps"),
    (dict(disagg={"link_gbps": 1}), "n_prefill required"),
    (dict(disagg="2p2d", migration="llumnix"), "not both"),
])
def test_bad_disagg_configs_are_rejected(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        ClusterSpec(H4, **kw)


def test_disagg_needs_one_model() -> None:
    with pytest.raises(ValueError, match="same model"):
        ClusterSpec(("H100-80GB/Llama-3-8B", "H100-80GB/Llama-3.1-8B"), disagg="1p1d")
