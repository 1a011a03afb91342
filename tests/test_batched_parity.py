"""BatchedJobShop is B JobShopEnvs: same observations, rewards, flags, infos and state, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from schedgym.envs.jobshop.batched import BatchedJobShop
from schedgym.envs.jobshop.env import JobShopEnv
from schedgym.envs.jobshop.generator import random_instance
from schedgym.envs.jobshop.io import load_benchmark

STATE = ("next_op", "job_ready", "machine_ready", "last_on_machine", "start", "n_scheduled", "makespan")


def _assert_same(batched_obs, single_obs, b, where):
    assert set(batched_obs) == set(single_obs), where
    for key, v in single_obs.items():
        got = batched_obs[key][b]
        assert got.dtype == v.dtype and got.shape == v.shape, f"{where}: {key}"
        assert np.array_equal(got, v), f"{where}: {key} differs"


def _run_parity(insts, steps, seed, p_invalid, **kw):
    """Step B single envs and one batched env with the same actions; compare everything after each step."""
    rng = np.random.default_rng(seed)
    batched = BatchedJobShop(insts, **kw)
    singles = [JobShopEnv(instance=i, **kw) for i in insts]
    obs, info = batched.reset()
    for b, env in enumerate(singles):
        o, inf = env.reset(seed=0)
        _assert_same(obs, o, b, "reset")
        assert info["makespan_lb"][b] == inf["makespan_lb"]
    kept = {k: v.copy() for k, v in obs.items()}
    first_obs = obs
    n_done = 0
    for t in range(steps):
        actions = np.empty(len(insts), np.int64)
        for b, env in enumerate(singles):
            valid = np.flatnonzero(env.action_masks())
            actions[b] = rng.integers(batched.max_jobs) if rng.random() < p_invalid else rng.choice(valid)
        obs, reward, term, trunc, info = batched.step(actions)
        for b, env in enumerate(singles):
            o, r, te, tr, inf = env.step(int(actions[b]))
            where = f"step {t} env {b} action {actions[b]}"
            _assert_same(obs, o, b, where)
            assert reward[b] == r and type(r) is float, where
            assert (term[b], trunc[b]) == (te, tr), where
            assert info["invalid_action"][b] == inf["invalid_action"], where
            assert info["makespan_lb"][b] == inf["makespan_lb"], where
            assert np.array_equal(info["action_mask"][b], inf["action_mask"]), where
            assert info["_makespan"][b] == ("makespan" in inf), where
            if te:
                assert info["makespan"][b] == inf["makespan"] == env.validate()["makespan"], where
            for name in STATE:
                assert np.array_equal(getattr(batched, name)[b], getattr(env.state, name)), f"{where}: {name}"
        ended = np.flatnonzero(term | trunc)
        if ended.size:
            n_done += ended.size
            obs, _ = batched.reset(ended)
            for b in ended:
                o, _ = singles[b].reset()
                _assert_same(obs, o, b, f"reset of env {b} after step {t}")
    for key, v in kept.items():  # observations handed out earlier were copies
        assert np.array_equal(first_obs[key], v), key
    return n_done


def test_parity_on_taillard_instance_with_valid_actions():
    ta01 = load_benchmark("ta01")
    assert _run_parity([ta01] * 3, steps=2 * 225, seed=1, p_invalid=0.0) == 6


def test_parity_with_different_instances_padding_invalid_actions_and_partial_resets():
    rng = np.random.default_rng(7)
    insts = [random_instance(rng, 6, 5, name=f"r{i}") for i in range(5)]
    n_done = _run_parity(insts, steps=150, seed=3, p_invalid=0.2, max_jobs=8, max_machines=7)
    assert n_done >= len(insts)  # every env finished at least once and was reset mid-run


def test_parity_when_invalid_actions_truncate():
    insts = [random_instance(np.random.default_rng(i), 2, 2) for i in range(3)]
    _run_parity(insts, steps=40, seed=5, p_invalid=0.9, max_jobs=3)


def test_copy_false_returns_the_internal_buffers():
    env = BatchedJobShop([load_benchmark("ft06")] * 2, copy=False)
    obs, _ = env.reset()
    obs2, *_ = env.step(np.array([0, 1]))
    assert obs2["node_features"] is obs["node_features"]


def test_rejects_bad_input():
    ft06 = load_benchmark("ft06")
    with pytest.raises(ValueError, match="every instance must be 6x6 on 6"):
        BatchedJobShop([ft06, random_instance(np.random.default_rng(0), 5, 6)])
    with pytest.raises(ValueError, match="at least one"):
        BatchedJobShop([])
    env = BatchedJobShop([ft06] * 2)
    with pytest.raises(ValueError, match="actions must be 2 integers"):
        env.step(np.array([0]))
    with pytest.raises(ValueError, match="actions must lie in 0..5"):
        env.step(np.array([0, 6]))
    with pytest.raises(ValueError, match="envs must lie in 0..1"):
        env.reset([2])
