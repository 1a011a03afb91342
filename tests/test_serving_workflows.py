"""LLMServing multi-stage workflows (HEXGEN-Text2SQL): stages released when their parents finish, EDF queues
raise deadline attainment over FCFS, the validator's DAG invariants, and bad workflow inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.effects import run_policy
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import ClusterSpec, EngineConfig, ServingWorkload
from schedgym.envs.serving.validator import ScheduleError, validate_schedule
from schedgym.envs.serving.workflows import Workflows, text2sql_preset, text2sql_workload


def test_edf_queues_raise_deadline_attainment_over_fcfs() -> None:
    w = text2sql_preset(0)
    kw = dict(cluster="a100-4", rate_scale=1.0)
    fcfs, _ = run_policy(w, "jsq", 0, engine={"queue_policy": "fcfs", "max_num_seqs": 16}, **kw)
    edf, _ = run_policy(w, "jsq", 0, engine={"queue_policy": "edf", "max_num_seqs": 16}, **kw)
    assert edf["deadline_attainment"] > fcfs["deadline_attainment"]


@pytest.fixture(scope="module")
def wf_sim() -> ClusterSim:
    w = text2sql_workload(part("azure-conv-2023", "test"), np.random.default_rng(1), 40, 2.0)
    sim = ClusterSim.build(w, ClusterSpec(("A100-80GB/Llama-3-8B",) * 2, EngineConfig(queue_policy="edf")))
    k = 0
    while (r := sim.next_decision()) is not None:
        sim.route(r, k % 2)
        k += 1
    sim.drain()
    return sim


def test_stages_are_released_after_their_parents_finish(wf_sim: ClusterSim) -> None:
    w = wf_sim.workload
    s = wf_sim.schedule()
    m = validate_schedule(w, s)
    assert 0 <= m["deadline_attainment"] <= 1
    for r in range(w.n_requests):
        ps = w.workflows.parents_of(r)
        if ps.size:
            assert wf_sim.arrival[r] == max(wf_sim.finish[p] for p in ps)


def test_validator_rejects_a_stage_starting_before_its_parent(wf_sim: ClusterSim) -> None:
    w, s = wf_sim.workload, wf_sim.schedule()
    child = int(np.flatnonzero(np.diff(w.workflows.parent_offsets) > 0)[0])
    j = int(np.flatnonzero(s.res_request == child)[0])
    alloc = s.res_alloc.copy()
    alloc[j] = w.arrival[child]  # claim it started at the workflow's arrival, before its parent finished
    with pytest.raises(ScheduleError, match="before its parent"):
        validate_schedule(w, replace(s, res_alloc=alloc))


@pytest.mark.parametrize("parents,offsets,wf,deadline,match", [
    ([1], [0, 1, 1], [0, 0], [10.0], "earlier stages"),
    ([0], [0, 0, 1], [0, 1], [10.0, 10.0], "another workflow"),
    ([0], [0, 0, 1], [0, 0], [0.0], "deadline_s"),
    ([0], [0, 0, 2], [0, 0], [10.0], "parent_offsets"),
])
def test_bad_workflows_are_rejected(parents, offsets, wf, deadline, match) -> None:
    with pytest.raises(ValueError, match=match):
        Workflows(np.array(wf), np.array(offsets), np.array(parents, np.int64), np.array(deadline))


def test_bad_workflow_workloads_are_rejected() -> None:
    wf = Workflows(np.array([0, 0]), np.array([0, 0, 1]), np.array([0]), np.array([10.0]))
    with pytest.raises(ValueError, match="workflow's arrival"):
        ServingWorkload("w", np.array([0.0, 1.0]), np.array([10, 10]), np.array([5, 5]), workflows=wf)
    ok = ServingWorkload("w", np.array([0.0, 0.0]), np.array([10, 10]), np.array([5, 5]), workflows=wf)
    with pytest.raises(ValueError, match="cannot be sliced"):
        ok.slice(0, 1)
    with pytest.raises(ValueError, match="queue_policy"):
        EngineConfig(queue_policy="lifo")


# ---------------------------------------------------------------------------------------------- urgency-aware routing
@pytest.mark.slow
def test_deadline_aware_routing_with_edf_beats_jsq_fcfs_on_every_seed() -> None:
    from schedgym.envs.serving.effects import WORKFLOW_SETTINGS, workflow_effect

    res = workflow_effect([0, 1, 2])
    base, best = np.array(res[WORKFLOW_SETTINGS[0]]), np.array(res[WORKFLOW_SETTINGS[-1]])
    assert (best > base).all() and (best - base).mean() > 0.03


def test_deadline_aware_router_sends_hopeless_stages_away_from_the_fastest_instance() -> None:
    import gymnasium as gym

    from schedgym.baselines.deadline_aware import DeadlineAware

    w = text2sql_workload(part("azure-conv-2023", "test"), np.random.default_rng(0), 30, 3.0)
    env = gym.make("schedgym/LLMServing-v0", instance=w, rate_scale=1.0, cluster="mixed-4")
    obs, info = env.reset(seed=0)
    pol = DeadlineAware()
    pol.reset(env, seed=0)
    sim = env.unwrapped.state
    for _ in range(20):  # load the cluster a little
        obs, _, _, _, info = env.step(pol.act(obs, info))
    r = sim.next_req
    valid = np.flatnonzero(info["action_mask"])
    est = pol.estimate(sim, r)
    assert pol.act(obs, info) == valid[np.argmin(est[valid])]  # deadline reachable: earliest estimated finish
    sim.deadline[r] = sim.now - 1.0  # past its deadline: shed to the instance with the latest estimate
    assert pol.act(obs, info) == valid[np.argmax(est[valid])]


def test_text2sql_dataset_is_sampled_by_the_env_without_an_instance() -> None:
    import gymnasium as gym

    from schedgym import datasets

    env = gym.make("schedgym/LLMServing-v0", dataset="serving/text2sql-r3", rate_scale=1.0, segment_requests=50)
    _, info = env.reset(seed=0)
    w = env.unwrapped.instance
    assert w.workflows is not None and w.n_requests == 50 and w.workflows.n_workflows == 10
    env.reset(seed=1)
    assert not np.array_equal(env.unwrapped.instance.arrival, w.arrival)
    test = datasets.get("serving/text2sql-r3")
    t0 = test.load(test.names("test")[0])
    assert t0.workflows.n_workflows == 300 and t0.name == "text2sql-r3/test/000"
    with pytest.raises(ValueError, match="rate must be > 0"):
        datasets.get("serving/text2sql-r0")
