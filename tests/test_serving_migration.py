"""LLMServing live migration (Llumnix): the effect on tail latency, the validator's migration invariants
(finish once, KV conserved, transfer time paid, same model), bad configurations, and determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.effects import run_policy
from schedgym.envs.serving.migration import MigrationConfig, resolve_migration
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import END_MIGRATE_OUT, START_MIGRATE_IN, ClusterSpec
from schedgym.envs.serving.validator import ScheduleError, validate_schedule

A10G = ("A10G/Llama-2-7B",) * 4


def _migrating_sim() -> ClusterSim:
    """Azure conv test part at x0.5 on 4 x A10G, round-robin dispatch, Llumnix migration on."""
    w = part("azure-conv-2023", "test").scaled(0.5).slice(0, 600)
    sim = ClusterSim.build(w, ClusterSpec(A10G, migration="llumnix"))
    k = 0
    while (r := sim.next_decision()) is not None:
        i = k % 4
        while not sim.feasible[r, i]:
            i = (i + 1) % 4
        sim.route(r, i)
        k += 1
    sim.drain()
    return sim


@pytest.fixture(scope="module")
def migrated() -> ClusterSim:
    return _migrating_sim()


@pytest.mark.slow
def test_migration_lowers_tail_latency_at_high_load() -> None:
    """Built in, and played by the ``llumnix_migration`` baseline at the agent decision point: the two are one
    implementation, so the episodes are identical (validated metrics equal) and both show the effect."""
    conv = part("azure-conv-2023", "test")
    off, _ = run_policy(conv, "llumnix", 0, cluster=list(A10G), rate_scale=0.5)
    on, _ = run_policy(conv, "llumnix", 0, cluster=list(A10G), rate_scale=0.5, migration="llumnix")
    agent, _ = run_policy(conv, "llumnix_migration", 0, cluster=list(A10G), rate_scale=0.5, migration="agent")
    assert off["migrations"] == 0 and on["migrations"] > 50
    assert on["p99_ttft"] < 0.9 * off["p99_ttft"] and on["mean_ttft"] < off["mean_ttft"]
    assert on["preemptions"] < off["preemptions"]
    assert agent == pytest.approx(on, rel=0, abs=0, nan_ok=True)


def test_migrated_requests_finish_once_with_kv_conserved(migrated: ClusterSim) -> None:
    s = migrated.schedule()
    m = validate_schedule(s.workload, s)
    assert m["migrations"] == sum(migrated.migrations) > 0
    ins = np.flatnonzero(s.res_start_kind == START_MIGRATE_IN)
    outs = np.flatnonzero(s.res_end_kind == END_MIGRATE_OUT)
    assert ins.size == outs.size == m["migrations"]
    # Each migrated request's last stint finishes it, on an instance other than where it was routed or moved.
    for r in np.unique(s.res_request[ins]):
        rows = np.flatnonzero(s.res_request == r)
        assert np.isfinite(migrated.finish[r]) and (s.res_end_kind[rows] == 0).sum() == 1


def _tamper(s, field: str, fn) -> object:
    arr = getattr(s, field).copy()
    fn(arr, s)
    return replace(s, **{field: arr})


def _first_in(s) -> int:
    return int(np.flatnonzero(s.res_start_kind == START_MIGRATE_IN)[0])


@pytest.mark.parametrize("field,fn,match", [
    ("res_kv_start", lambda a, s: a.__setitem__(_first_in(s), a[_first_in(s)] + 1), "conserved"),
    ("res_alloc", lambda a, s: a.__setitem__(_first_in(s), s.res_end[np.flatnonzero(
        (s.res_request == s.res_request[_first_in(s)]) & (s.res_end_kind == END_MIGRATE_OUT))[0]]),
     "faster than its KV transfer"),
    ("res_start_kind", lambda a, s: a.__setitem__(_first_in(s), 1), "swap-in"),
    ("res_end_kind", lambda a, s: a.__setitem__(np.flatnonzero(a == END_MIGRATE_OUT)[0], 0), "finish exactly once"),
])
def test_validator_catches_broken_migrations(migrated: ClusterSim, field, fn, match) -> None:
    s = migrated.schedule()
    with pytest.raises(ScheduleError, match=match):
        validate_schedule(s.workload, _tamper(s, field, fn))


def test_validator_rejects_migration_to_the_same_instance(migrated: ClusterSim) -> None:
    s = migrated.schedule()
    j = _first_in(s)
    src = s.res_instance[np.flatnonzero((s.res_request == s.res_request[j]) & (s.res_alloc < s.res_alloc[j]))[-1]]
    bad = _tamper(s, "res_instance", lambda a, _: a.__setitem__(j, src))
    with pytest.raises(ScheduleError, match="another instance"):
        validate_schedule(s.workload, bad)


def test_migration_is_deterministic(migrated: ClusterSim) -> None:
    again = _migrating_sim()
    assert again.res_log == migrated.res_log and again.seg_log == migrated.seg_log


def test_off_by_default_keeps_the_v0_log() -> None:
    assert ClusterSpec(A10G).migration is None
    w = part("azure-conv-2023", "test").slice(0, 50)
    sim = ClusterSim.build(w, ClusterSpec(A10G))
    while (r := sim.next_decision()) is not None:
        sim.route(r, r % 4)
    sim.drain()
    assert sim.schedule().res_instance is None and sum(sim.migrations) == 0


@pytest.mark.parametrize("cfg,match", [
    ({"interval_s": 0}, "interval_s"),
    ({"link_gbps": -1}, "link_gbps"),
    ({"out_threshold": 10, "in_threshold": 5}, "in_threshold"),
    ({"max_per_tick": 0}, "max_per_tick"),
    ({"bandwidth": 1}, "unknown key"),
    ("vllm", "unknown migration preset"),
])
def test_bad_migration_configs_are_rejected(cfg, match) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_migration(cfg)


def test_migration_needs_instances_of_one_model() -> None:
    with pytest.raises(ValueError, match="same model"):
        ClusterSpec(("A10G/Llama-2-7B", "H100-80GB/Llama-3-8B"), migration="llumnix")
    assert resolve_migration("llumnix") == MigrationConfig()


def test_priority_headroom_speeds_up_the_high_priority_class() -> None:
    conv = part("azure-conv-2023", "test")
    kw = dict(cluster=list(A10G), rate_scale=0.5, slo={"ttft_s": [1.0, 5.0], "tpot_s": [0.05, 0.2]},
              class_probs=[0.05, 0.95])
    base, _ = run_policy(conv, "llumnix", 0, **kw)
    head, _ = run_policy(conv, "llumnix_priority", 0, **kw)
    assert head["p99_ttft_class0"] < base["p99_ttft_class0"] and head["p99_tpot_class0"] < base["p99_tpot_class0"]
    with pytest.raises(ValueError, match="priority_headroom_blocks"):
        resolve_migration({"priority_headroom_blocks": -1})
    assert resolve_migration("llumnix-priority").priority_headroom_blocks > 0


# ---------------------------------------------------------------------------------------------- agent decider
def _agent_env(**kw):
    import gymnasium as gym

    import schedgym  # noqa: F401

    return gym.make("schedgym/LLMServing-v0", cluster=list(A10G), rate_scale=2.0, migration="agent", **kw)


def test_agent_decision_point_appears_and_its_migrations_validate() -> None:
    """A random masked agent at the migration decision point: ticks appear, moves happen, and the
    validator accepts them (each request finishes once, KV conserved across the transfer, progress kept)."""
    env = _agent_env()
    N, M = 4, 4 * 3 * 2
    assert env.action_space.n == N + M + 1
    assert env.observation_space["node_features"].shape == (N + 1 + M, 26)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    decisions = {"route": 0, "migrate": 0}
    moves = 0
    while True:
        mask = info["action_mask"]
        decisions[info["decision"]] += 1
        if info["decision"] == "route":
            assert not mask[N:].any() and mask[:N].any()
            assert obs["node_mask"][N + 1:].sum() == 0
        else:
            assert not mask[:N].any() and mask[N + M] == 1 and mask[N:N + M].any()
            present = np.flatnonzero(mask[N:N + M])
            np.testing.assert_array_equal(np.flatnonzero(obs["node_mask"][N + 1:]), present)
            assert (obs["node_features"][N + 1 + present, 21] == 1).all()  # is_move
            assert obs["node_features"][N, 20] == 1 and obs["node_features"][N, 13] == 0  # is_tick, not a request
        a = int(rng.choice(np.flatnonzero(mask)))
        moves += N <= a < N + M
        obs, _, term, trunc, info = env.step(a)
        assert not info["invalid_action"]
        if term or trunc:
            break
    assert decisions["migrate"] > 10 and moves > 10
    base = env.unwrapped
    m = base.validate()
    assert m["p99_ttft"] == info["p99_ttft"] and m["migrations"] == info["migrations"] > 0
    s = base.schedule()
    for r in np.unique(s.res_request[s.res_start_kind == START_MIGRATE_IN]):
        rows = np.flatnonzero(s.res_request == r)
        rows = rows[np.argsort(s.res_alloc[rows], kind="stable")]
        assert (s.res_end_kind[rows] == 0).sum() == 1 and s.res_end_kind[rows[-1]] == 0
        for a_, b_ in zip(rows[:-1], rows[1:], strict=True):  # progress kept: a migrated stint resumes, no prefill
            if s.res_end_kind[a_] == END_MIGRATE_OUT:
                assert s.res_start_kind[b_] == START_MIGRATE_IN and s.res_instance[b_] != s.res_instance[a_]


def test_agent_moves_are_masked_and_strict_mode_names_them() -> None:
    env = _agent_env(strict=True)
    obs, info = env.reset(seed=1)
    while info["decision"] != "migrate":
        obs, *_, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    bad = int(np.flatnonzero(info["action_mask"] == 0)[-1])
    with pytest.raises(ValueError, match=rf"action {bad} is masked out \(no such candidate migration"):
        env.step(bad)
    with pytest.raises(ValueError, match="masked out"):
        env.step(0)  # routing actions are invalid at a tick
    sim = env.unwrapped.state
    with pytest.raises(RuntimeError, match="tick awaits"):
        sim.next_decision()
    with pytest.raises(ValueError, match="valid slots"):
        sim.migrate(bad - 4)


def test_default_config_keeps_the_v0_observation_and_action() -> None:
    import gymnasium as gym

    env = gym.make("schedgym/LLMServing-v0")
    assert env.action_space.n == 4 and env.observation_space["node_features"].shape == (5, 20)
    _, info = env.reset(seed=0)
    assert "decision" not in info


@pytest.mark.parametrize("cfg,match", [({"decider": "rl"}, "decider"), ({"candidates_per_pair": 0}, "candidates")])
def test_bad_agent_migration_configs_are_rejected(cfg, match) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_migration(cfg)
    with pytest.raises(ValueError, match="at least two instances"):
        ClusterSpec(A10G[:1], migration="agent")


def test_llumnix_rule_via_agent_matches_builtin_with_several_moves_per_tick_and_priorities() -> None:
    conv = part("azure-conv-2023", "test").slice(0, 600)
    cfg = {"max_per_tick": 3, "out_threshold": 8.0, "in_threshold": 12.0, "priority_headroom_blocks": 64.0}
    kw = dict(cluster=list(A10G), rate_scale=0.5, slo={"ttft_s": [1.0, 5.0], "tpot_s": [0.05, 0.2]},
              class_probs=[0.1, 0.9])
    builtin, _ = run_policy(conv, "llumnix", 0, migration=cfg, **kw)
    agent, _ = run_policy(conv, "llumnix_migration", 0, migration={**cfg, "decider": "agent"}, **kw)
    assert builtin["migrations"] > 20
    assert agent == pytest.approx(builtin, rel=0, abs=0, nan_ok=True)
    # A plain router at the decision point never migrates: the same episode as migration off.
    off, _ = run_policy(conv, "llumnix", 0, **kw)
    noop, _ = run_policy(conv, "llumnix", 0, migration={**cfg, "decider": "agent"}, **kw)
    assert noop == pytest.approx(off, rel=0, abs=0, nan_ok=True) and noop["migrations"] == 0


def test_agent_decision_point_is_deterministic_and_copyable_mid_episode() -> None:
    import copy
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import assert_trajectories_equal, rollout

    t1, t2 = rollout(_agent_env(), 3, 3), rollout(_agent_env(), 3, 3)
    assert_trajectories_equal(t1, t2, "p99_ttft")
    env = _agent_env()
    rng = np.random.default_rng(5)
    head = rollout(env, 5, rng, max_steps=40)
    assert any(i["decision"] == "migrate" for i in head.infos)
    clone, rng2 = copy.deepcopy(env), copy.deepcopy(rng)
    first = (head.observations[-1], head.infos[-1])
    assert_trajectories_equal(rollout(env, None, rng, first=first), rollout(clone, None, rng2, first=first), "p99_ttft")
