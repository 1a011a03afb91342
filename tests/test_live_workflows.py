"""Priority classes and HEXGEN-Text2SQL workflows on the live engines (LLMServingLive-v0): the engines admit in
the simulator's queue order (``queueing.py``), stages start only after their parents really finished, and every
live log validates with the simulator's validator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tests_live_helpers import DEVICE

import schedgym  # noqa: F401
from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import START_PREFILL, ClusterSpec, EngineConfig, InstanceSpec, ServingWorkload
from schedgym.envs.serving.workflows import text2sql_workload
from schedgym.hwbackend.engine import LiveEngine
from schedgym.hwbackend.profiler import calibrate, write_table
from schedgym.policy import make_policy

torch.set_num_threads(1)
LIVE = "schedgym/LLMServingLive-v0"
ONE_AT_A_TIME = {"max_num_seqs": 1, "block_size": 4}


def play(env: gym.Env, policy_name: str, seed: int = 0) -> dict:
    """One episode of a baseline; returns the final info (every metric the env reports)."""
    policy = make_policy(LIVE, policy_name)
    obs, info = env.reset(seed=seed)
    policy.reset(env, seed)
    while True:
        obs, _, term, trunc, info = env.step(policy.act(obs, info))
        if term or trunc:
            assert term
            return info


def admission_order(res: list[tuple]) -> list[int]:
    """Requests in the order of their first KV allocation (from residency tuples)."""
    first = {}
    for r in sorted(res, key=lambda x: x[1]):
        first.setdefault(int(r[0]), float(r[1]))
    return sorted(first, key=first.get)


@pytest.mark.parametrize("policy", ["fcfs", "priority", "edf"])
def test_engine_admits_in_queue_policy_order(policy: str) -> None:
    """Under contention (one sequence at a time) request 4, high priority / earliest deadline but submitted last,
    is admitted before the earlier queued ones — except under FCFS; tokens are the same in every order."""
    eng = LiveEngine("tiny", {**ONE_AT_A_TIME, "queue_policy": policy}, num_blocks=64, context_limit=128,
                     device=DEVICE)
    eng.submit(0, 8, 4, priority=1, deadline=9.0)
    eng.step()  # request 0 is admitted and prefilled: the engine is busy with it
    for r in (1, 2, 3):
        eng.submit(r, 8, 4, priority=1, deadline=9.0 + r)
    eng.submit(4, 8, 4, priority=0, deadline=1.0)
    seqs = {s.rid: s for s in eng.waiting}
    eng.run_until_idle()
    order = admission_order(eng.res_log)
    assert order == ([0, 1, 2, 3, 4] if policy == "fcfs" else [0, 4, 1, 2, 3])
    ref = LiveEngine("tiny", {"block_size": 4}, num_blocks=64, context_limit=128, device=DEVICE)
    ref.submit(4, 8, 4)
    s4 = ref.waiting[0]
    ref.run_until_idle()
    assert seqs[4].generated == s4.generated  # order changes when, not what, a request generates


def burst_with_classes() -> ServingWorkload:
    """Request 0 is long (it holds the only slot), then low-priority requests, then high-priority ones."""
    pr = np.array([1, 1, 1, 1, 0, 1, 0])
    return ServingWorkload("classes", np.arange(7) * 0.005, np.full(7, 12), np.array([200, 4, 4, 4, 4, 4, 4]),
                           priority=pr)


def test_live_priority_admission_matches_the_simulator_and_validates() -> None:
    w = burst_with_classes()
    slo = {"ttft_s": [1.0, 5.0], "tpot_s": [0.5, 0.5]}
    engine = {**ONE_AT_A_TIME, "queue_policy": "priority"}
    env = gym.make(LIVE, instance=w, n_engines=1, engine=engine, num_blocks=64, context_limit=256,
                   rate_scale=1.0, token_scale=1.0, slo=slo, device=DEVICE)
    row = play(env, "round_robin")
    u = env.unwrapped
    live_order = admission_order([r for _, r in u.state.res])
    assert live_order == [0, 4, 6, 1, 2, 3, 5]  # class 0 jumps the earlier class-1 requests
    checked = u.validate()  # the simulator's validator on the real log
    for key in ("p99_ttft_class0", "p99_ttft_class1", "slo_attainment_class0", "slo_attainment_class1"):
        assert checked[key] == pytest.approx(row[key], rel=1e-12, nan_ok=True)
    sim = ClusterSim.build(w, ClusterSpec((InstanceSpec("CPU", "schedgym-tiny", 1, 256, None),),
                                          EngineConfig.from_dict({**engine, "num_gpu_blocks": 64}), u.cluster.slo))
    while (r := sim.next_decision()) is not None:
        sim.route(r, 0)
    sim.drain()
    assert admission_order([x[:8] for x in sim.res_log]) == live_order  # the simulator's order, on real engines


def test_live_class_probs_and_bad_classes() -> None:
    slo = {"ttft_s": [1.0, 5.0], "tpot_s": [0.5, 0.5]}
    with pytest.raises(ValueError, match="class_probs has 3 entries"):
        gym.make(LIVE, slo=slo, class_probs=[0.2, 0.3, 0.5])
    env = gym.make(LIVE, instance=burst_with_classes(), n_engines=1, slo={"ttft_s": [1.0], "tpot_s": [0.5]},
                   device=DEVICE)
    with pytest.raises(ValueError, match="priority class 1 but the SLO defines only 1"):
        env.reset(seed=0)
    env.close()
    with pytest.raises(ValueError, match="queue_policy"):
        gym.make(LIVE, engine={"queue_policy": "lifo"})


def small_text2sql(n_workflows: int = 4, rate: float = 20.0) -> ServingWorkload:
    """Text2SQL workflows (schema linking -> 3 candidates -> selection) with tight deadlines."""
    return text2sql_workload(part("azure-conv-2023", "test"), np.random.default_rng(5), n_workflows, rate,
                             deadline_range=(0.2, 2.0))


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> str:
    doc = calibrate("tiny", device=DEVICE, prefill=(0, 1, 16, 64), decode=(0, 1, 4, 16), context=(16, 128),
                    repeats=2, warmup=1)
    return str(write_table(doc, tmp_path_factory.mktemp("cal") / "tiny.json"))


@pytest.mark.parametrize("policy,queue", [("round_robin", "fcfs"), ("deadline_aware", "edf")])
def test_live_workflow_stages_start_after_their_parents(policy: str, queue: str, table: str) -> None:
    w = small_text2sql()
    env = gym.make(LIVE, instance=w, n_engines=2, engine={"queue_policy": queue, "max_num_seqs": 4},
                   num_blocks=128, context_limit=256, rate_scale=1.0, token_scale=0.05, calibration=table,
                   device=DEVICE)
    row = play(env, policy)
    u = env.unwrapped
    wf, s = u.instance.workflows, u.schedule()
    assert row["n_served"] == w.n_requests and 0.0 <= row["deadline_attainment"] <= 1.0
    checked = u.validate()  # includes the validator's workflow invariant on the live log
    assert checked["deadline_attainment"] == row["deadline_attainment"]
    assert checked["p99_ttft"] == pytest.approx(row["p99_ttft"], rel=1e-12)
    finish = u.state.finish
    assert np.isfinite(finish).all()
    for r in range(w.n_requests):
        ps = wf.parents_of(r)
        mine = s.res_request == r
        assert (s.res_start_kind[mine] == START_PREFILL).any()
        if ps.size:  # real: the engine allocated the stage only after every parent's engine finished it
            assert s.res_alloc[mine].min() >= finish[ps].max()
            assert u.state.arrival[r] == finish[ps].max()  # its arrival is its release
    assert u.state.dispatched[wf.parent_offsets[1:] > wf.parent_offsets[:-1]].min() > 0


def test_deadline_aware_on_live_needs_a_calibration() -> None:
    env = gym.make(LIVE, instance=small_text2sql(1), n_engines=1, device=DEVICE, token_scale=0.05)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="calibration"):
        make_policy(LIVE, "deadline_aware").reset(env, 0)
    env.close()


def test_validator_accepts_stages_rejected_with_their_parent() -> None:
    """A root too long for any instance is rejected, and with it its whole workflow (live and simulated);
    the validator used to flag the descendants as servable requests that were rejected."""
    w = small_text2sql(2)
    p = w.prompt_tokens.copy()
    p[0] = 10_000  # workflow 0's schema-linking stage cannot fit a 256-token context
    w = ServingWorkload(w.name, w.arrival, p, w.output_tokens, workflows=w.workflows)
    env = gym.make(LIVE, instance=w, n_engines=1, num_blocks=128, context_limit=256, rate_scale=1.0,
                   token_scale=0.05, device=DEVICE)
    info = play(env, "round_robin")
    stages0 = np.flatnonzero(w.workflows.workflow == 0)
    assert sorted(env.unwrapped.state.rejected) == stages0.tolist()
    checked = env.unwrapped.validate()
    assert checked["n_rejected"] == stages0.size == info["n_rejected"]
    assert checked["deadline_attainment"] == info["deadline_attainment"] <= 0.5


def test_live_env_samples_the_named_text2sql_dataset() -> None:
    env = gym.make(LIVE, dataset="serving/text2sql-r20", segment_requests=10, n_engines=2, token_scale=0.02,
                   device=DEVICE)
    info = play(env, "round_robin")
    u = env.unwrapped
    assert u.instance.workflows is not None and u.instance.workflows.n_workflows == 2
    checked = u.validate()
    assert checked["n_served"] + checked["n_rejected"] == 10
    assert checked["deadline_attainment"] == info["deadline_attainment"]
