"""DAGDispatch-v0 semantics: FIFO queues on busy PEs, data-arrival delays, the wait action, rewards that sum
to
the objectives, seeded noise hidden from the scheduler, admission with limited slots, observation layout."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym import datasets, to_pyg
from schedgym.envs.dag.datasets import topcuoglu_stream
from schedgym.envs.dag.env import DAGDispatchEnv
from schedgym.envs.dag.io import topcuoglu
from schedgym.envs.dag.observation import F_IS_PE, F_READY
from schedgym.envs.dag.sim import QUEUED
from schedgym.envs.dag.types import INF, DagInstance, DagWorkload, Platform
from schedgym.envs.dag.validator import validate_schedule
from schedgym.envs.dag.viewer import save_schedule_gantt
from schedgym.policy import make_policy

ENV = "schedgym/DAGDispatch-v0"


def two_cpus() -> DagInstance:
    """2 identical CPUs, latency 1, bandwidth 1. a (2), b (3) independent; a -> c (1) carrying 2 units."""
    pf = Platform(
        "p",
        ("c0", "c1"),
        np.array([0, 0]),
        ("cpu",),
        ("x",),
        np.array([[1.0]]),
        np.array([[0, 1.0], [1.0, 0]]),
        np.ones((2, 2)),
    )
    wl = DagWorkload(
        "w",
        ("j",),
        np.zeros(1),
        np.zeros(3, np.int64),
        ("x",) * 3,
        np.array([2.0, 3.0, 1.0]),
        np.array([0]),
        np.array([2]),
        np.array([2.0]),
        ("a", "b", "c"),
    )
    return DagInstance("two", pf, wl)


def run(env: gym.Env, policy: str = "heft", seed: int = 0, **kw) -> dict:  # type: ignore[no-untyped-def]
    pol = make_policy(ENV, policy, **kw)
    obs, info = env.reset(seed=seed)
    pol.reset(env, seed=seed)
    rewards, done = [], False
    while not done:
        obs, r, term, trunc, info = env.step(pol.act(obs, info))
        rewards.append(r)
        done = term or trunc
    assert term and not trunc
    info["return"] = float(np.sum(rewards))
    info["policy"] = pol
    return info


def test_queue_on_a_busy_pe_and_data_arrival():
    env = gym.make(ENV, instance=two_cpus())
    base: DAGDispatchEnv = env.unwrapped
    obs, info = env.reset(seed=0)
    assert info["time"] == 0.0 and base.decode(base.action_of(0, 0)) == (0, 0)
    obs, *_, info = env.step(base.action_of(0, 0))  # a -> c0 [0, 2)
    obs, *_, info = env.step(base.action_of(1, 0))  # b queued behind a on c0 [2, 5)
    assert info["time"] == 2.0  # no ready task left: the clock ran to a's completion, c is ready
    assert base.state.status[1] != QUEUED  # b now holds c0
    obs, r, term, trunc, info = env.step(base.action_of(2, 1))  # c on c1: data at 2 + 1 + 2/1 = 5
    assert term and info["makespan"] == 6.0
    s = base.schedule()
    assert s.start.tolist() == [0.0, 2.0, 5.0] and s.pe.tolist() == [0, 0, 1]
    assert base.validate()["makespan"] == 6.0


def test_wait_defers_and_is_masked_when_nothing_can_happen():
    env = gym.make(ENV, instance=two_cpus())
    base = env.unwrapped
    obs, info = env.reset(seed=0)
    assert obs["action_mask"][base.wait_action] == 0  # nothing running, nothing to arrive
    obs, *_, info = env.step(base.action_of(0, 1))  # a -> c1
    assert info["time"] == 0.0 and obs["action_mask"][base.wait_action] == 1  # b still ready; a is running
    obs, *_, info = env.step(base.wait_action)
    assert info["time"] == 2.0  # a finished: c ready beside b
    assert obs["action_mask"][base.wait_action] == 0
    ready = {base.decode(a)[0] for a in np.flatnonzero(obs["action_mask"][:-1])}
    assert ready == {1, 2}


def test_slowdown_return_is_minus_total_slowdown_and_makespan_return_is_minus_makespan():
    inst = datasets.get("dag/stream-sp-12").load("stream-sp-12-soc-003")
    env = gym.make(ENV, instance=inst)
    info = run(env, "mct")
    v = validate_schedule(inst, env.unwrapped.schedule())
    np.testing.assert_allclose(info["return"], -v["mean_slowdown"] * inst.n_jobs, rtol=1e-9)
    env2 = gym.make(ENV, instance=inst, reward="makespan")
    info2 = run(env2, "mct")
    np.testing.assert_allclose(info2["return"], -v["makespan"] / env2.unwrapped.time_scale, rtol=1e-9)
    assert info2["makespan"] == v["makespan"]


def test_noise_is_seeded_mean_one_and_hidden_from_the_scheduler():
    inst = datasets.get("dag/stream-layered-100").load("stream-layered-100-soc-000")
    env = gym.make(ENV, instance=inst, noise=0.3)
    base = env.unwrapped
    env.reset(seed=4)
    f1 = base.state.noise.copy()
    env.reset(seed=4)
    np.testing.assert_array_equal(base.state.noise, f1)
    env.reset(seed=5)
    assert not np.array_equal(base.state.noise, f1)
    assert abs(f1.mean() - 1) < 0.05 and abs(f1.std() / f1.mean() - 0.3) < 0.05
    # The scheduler's expected finish of a just-started task uses the expected time, not the noisy one.
    st = base.state
    i = int(next(iter(st.ready)))
    p = int(np.argmin(inst.exec_time[i]))
    env.step(base.action_of(i, p))
    assert st.expected_finish[i] == pytest.approx(st.start[i] + inst.exec_time[i, p])
    assert st.finish[i] == st.start[i] + inst.exec_time[i, p] * st.noise[i]


@pytest.mark.parametrize("replan", ["auto", "arrivals"])
def test_heft_under_noise_validates_and_replans_only_when_asked(replan):
    inst = topcuoglu()
    env = gym.make(ENV, instance=inst, noise=0.2)
    info = run(env, "heft", seed=3, replan=replan)
    assert env.unwrapped.validate()["makespan"] == info["makespan"]
    n = info["policy"].n_plans
    assert (n > 1) if replan == "auto" else (n == 1)


def test_limited_slots_admit_jobs_fifo_and_recycle_slots():
    inst = topcuoglu_stream(np.random.default_rng(0), n_jobs=4)
    env = gym.make(ENV, instance=inst, max_tasks=12, max_edges=20)
    base = env.unwrapped
    obs, info = env.reset(seed=0)
    pol = make_policy(ENV, "mct")
    pol.reset(env)
    seen_backlog, done = False, False
    while not done:
        assert obs["node_mask"][:12].sum() <= 12
        seen_backlog |= bool(base.state.backlog)
        obs, _, term, trunc, info = env.step(pol.act(obs, info))
        done = term or trunc
    assert seen_backlog
    v = base.validate()
    assert v["makespan"] == info["makespan"]
    with pytest.raises(ValueError, match="max_tasks=9"):
        gym.make(ENV, instance=inst, max_tasks=9)


def test_observation_layout_is_consistent_and_incremental_encoding_is_exact():
    env = gym.make(ENV, dataset="dag/stream-forkjoin-10")
    base = env.unwrapped
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    steps, done = 0, False
    while not done:
        valid = np.flatnonzero(obs["action_mask"])
        pairs = valid[valid != base.wait_action]
        nodes, pes = obs["action_node"][pairs], obs["action_pe"][pairs]
        assert (obs["node_mask"][nodes] == 1).all() and (obs["node_features"][nodes, F_READY] == 1).all()
        assert (obs["node_features"][pes, F_IS_PE] == 1).all()
        live_e = obs["edge_mask"].astype(bool)
        assert (obs["node_mask"][obs["edge_index"][:, live_e]] == 1).all()
        if steps % 7 == 0:  # the incremental buffers equal a full rewrite
            base.encoder.invalidate()
            base.encoder.encode(base.state)
            full = base.encoder.observation()
            for k in obs:
                np.testing.assert_array_equal(obs[k], full[k], err_msg=k)
        obs, _, term, trunc, info = env.step(int(valid[rng.integers(valid.size)]))
        done = term or trunc
        steps += 1
    assert base.validate()["makespan"] == info["makespan"]


@pytest.mark.slow  # importing torch-geometric takes seconds
def test_observation_converts_to_pyg_with_task_pe_and_system_nodes():
    env = gym.make(ENV, instance="topcuoglu")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(env.unwrapped.action_of(0, 2))
    data = to_pyg(obs)
    assert data.x.shape == (int(obs["node_mask"].sum()), obs["node_features"].shape[1])
    assert data.edge_index.shape[1] == int(obs["edge_mask"].sum())
    assert data.action_node.shape == (env.action_space.n,)


def test_render_modes_and_gantt_png(tmp_path):
    env = gym.make(ENV, instance="topcuoglu", render_mode="rgb_array")
    info = run(env, "heft")
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
    ansi = gym.make(ENV, instance="topcuoglu", render_mode="ansi")
    run(ansi, "heft")
    text = ansi.render()
    assert "P1" in text and "n10@73" in text
    png = save_schedule_gantt(topcuoglu(), env.unwrapped.schedule(), tmp_path / "g.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and info["makespan"] == 80


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="reward must be one of"):
        gym.make(ENV, instance="topcuoglu", reward="jct")
    with pytest.raises(ValueError, match="noise must be"):
        gym.make(ENV, instance="topcuoglu", noise=-0.1)
    with pytest.raises(ValueError, match="max_pes must be >= 1"):
        gym.make(ENV, instance="topcuoglu", max_pes=0)
    with pytest.raises(TypeError, match="unknown config keys \\['colour'\\]"):
        DAGDispatchEnv({"colour": 1})
    with pytest.raises(ValueError, match="unknown dataset 'dag/nope'"):
        gym.make(ENV, dataset="dag/nope")
    env = gym.make(ENV, instance="topcuoglu")
    with pytest.raises(TypeError, match="options\\['instance'\\] must be a DagInstance"):
        env.reset(options={"instance": "topcuoglu"})
    big = datasets.get("dag/random-chain-30").load("random-chain-30-soc-000")
    with pytest.raises(ValueError, match="does not fit|PEs"):
        env.reset(options={"instance": big})


def test_rllib_style_config_and_reset_options_instance():
    env = DAGDispatchEnv({"dataset": "dag/random-sp-8", "reward": "makespan", "noise": 0.1})
    assert env.reward_mode == "makespan" and env.noise == 0.1
    inst = datasets.get("dag/random-sp-8").load("random-sp-8-soc-005")
    obs, _ = env.reset(seed=0, options={"instance": inst})
    assert env.instance is inst and env.observation_space.contains(obs)


def test_unsupported_pairs_are_masked():
    pf = Platform(
        "p",
        ("cpu0", "acc0"),
        np.array([0, 1]),
        ("cpu", "acc"),
        ("k",),
        np.array([[1.0, INF]]),
        np.zeros((2, 2)),
        np.ones((2, 2)),
    )
    wl = DagWorkload(
        "w",
        ("j",),
        np.zeros(1),
        np.zeros(1, np.int64),
        ("k",),
        np.ones(1),
        np.array([], np.int64),
        np.array([], np.int64),
        np.array([]),
        ("only",),
    )
    env = gym.make(ENV, instance=DagInstance("u", pf, wl), strict=True)
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].tolist() == [1, 0, 0]
    with pytest.raises(
        ValueError, match=r"action 1 = \(slot 0, PE 1\) is masked out .* valid actions: \[0\]"
    ):
        env.step(1)
