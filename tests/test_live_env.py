"""LLMServingLive-v0 on CPU with the tiny model: episodes validate, faults lose no request, Ray actors work."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from tests_live_helpers import DEVICE, cpu_only

import schedgym  # noqa: F401
from schedgym.envs.serving.types import ServingWorkload

torch.set_num_threads(1)
ENV_ID = "schedgym/LLMServingLive-v0"


def burst(n: int = 16, gap: float = 0.01, prompt: int = 40, output: int = 60) -> ServingWorkload:
    rng = np.random.default_rng(0)
    return ServingWorkload("burst", np.arange(n) * gap, rng.integers(prompt // 2, prompt, n),
                           rng.integers(output // 2, output, n))


def run_episode(env: gym.Env, kill_at: int | None = None, seed: int = 0) -> tuple[dict, int]:
    obs, info = env.reset(seed=seed)
    n = 0
    while True:
        if kill_at is not None and n == kill_at:
            env.unwrapped.live.kill(0)
        valid = np.flatnonzero(info["action_mask"])
        obs, _, term, trunc, info = env.step(int(valid[n % valid.size]))
        assert env.observation_space.contains(obs)
        n += 1
        if term or trunc:
            return info, n


def test_registered_nondeterministic_and_documented() -> None:
    spec = gym.spec(ENV_ID)
    assert spec.nondeterministic is True
    doc = type(gym.make(ENV_ID).unwrapped).__doc__
    for sec in ("Description", "Observation", "Action", "Reward", "Episode end", "Arguments", "Version history"):
        assert f"## {sec}" in doc


def test_live_episode_validates_every_request() -> None:
    env = gym.make(ENV_ID, device=DEVICE)
    info, n = run_episode(env)
    u = env.unwrapped
    checked = u.validate()
    assert n + info["n_rejected"] == u.instance.n_requests
    assert checked["n_served"] + checked["n_rejected"] == u.instance.n_requests
    assert checked["p99_ttft"] == pytest.approx(info["p99_ttft"], rel=1e-12)
    assert checked["p50_e2e"] == pytest.approx(info["p50_e2e"], rel=1e-12)
    assert (u.schedule().seg_end > u.schedule().seg_start).all()
    env.close()


def test_live_check_env_and_strict_mask() -> None:
    env = gym.make(ENV_ID, instance=burst(4), n_engines=2, token_scale=1.0, strict=True, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    env.unwrapped.live.kill(1)
    env.unwrapped._poll()
    obs = env.unwrapped._obs()
    assert obs["action_mask"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="masked out"):
        env.step(1)
    env.close()


def test_killing_an_engine_loses_no_request() -> None:
    w = burst(16)
    env = gym.make(ENV_ID, instance=w, token_scale=1.0, rate_scale=1.0, n_engines=2, device=DEVICE)
    info, _ = run_episode(env, kill_at=8)
    u = env.unwrapped
    assert info["n_served"] == w.n_requests
    assert info["redispatched"], "engine 0 had unfinished requests when it was killed"
    checked = u.validate()
    assert checked["n_served"] == w.n_requests
    assert (u.schedule().instance[[r for r, _, _ in info["redispatched"]]] == 1).all()
    env.close()


def test_live_swap_preemption_validates() -> None:
    """FastSwitch's setting on real engines: an undersized cache swaps KV blocks to host memory and back; the
    simulator's validator accepts the log (swap-out/in pairs conserve blocks, each transfer sits in an
    iteration long enough to carry it at the declared bandwidth) and every request is served."""
    w = burst(12, gap=0.002, prompt=40, output=60)
    env = gym.make(ENV_ID, instance=w, token_scale=1.0, rate_scale=1.0, n_engines=1, num_blocks=24,
                   engine={"preemption": "swap", "block_size": 4, "watermark": 0.0}, device=DEVICE)
    info, _ = run_episode(env)
    u = env.unwrapped
    checked = u.validate()
    assert checked["n_served"] == w.n_requests
    assert checked["swap_time_s"] > 0, "the undersized cache should swap"
    assert info["n_served"] == w.n_requests
    env.close()


def test_routing_baselines_run_on_live_engines() -> None:
    """The serving baselines read the live env's state (the same view as the simulator's) and go through the
    evaluation harness and validator (``deadline_aware`` on live engines: tests/test_live_workflows.py)."""
    from schedgym.evaluation import run_episode
    from schedgym.policy import make_policy

    w = burst(12, gap=0.003)
    for name in ("jsq", "llumnix", "least_kv"):
        row = run_episode(ENV_ID, make_policy(ENV_ID, name), w, 0,
                          env_kwargs={"token_scale": 1.0, "rate_scale": 1.0, "device": DEVICE})
        assert row["n_served"] == w.n_requests


@cpu_only
@pytest.mark.slow
def test_ray_actor_engines_and_fault(ray_session) -> None:
    """Engines as Ray actor processes; killing one actor mid-run re-dispatches its requests, none lost."""
    w = burst(16)
    env = gym.make(ENV_ID, instance=w, token_scale=1.0, rate_scale=1.0, n_engines=2, backend="ray")
    info, _ = run_episode(env, kill_at=8)
    assert info["n_served"] == w.n_requests
    assert info["redispatched"]
    assert env.unwrapped.validate()["n_served"] == w.n_requests
    env.close()


@cpu_only
@pytest.mark.slow
def test_ray_actor_engines_share_prefix_blocks(ray_session) -> None:
    """Prefix caching with Ray actor engines: hashes reach the actors, their caches come back in the polls."""
    from schedgym.envs.serving.io import load_trace
    env = gym.make(ENV_ID, instance=load_trace("mooncake-conversation").slice(0, 24), token_scale=1 / 32,
                   rate_scale=20.0, context_limit=1024, num_blocks=1024, engine={"prefix_caching": True},
                   backend="ray")
    run_episode(env)
    assert env.unwrapped.validate()["prefix_hit_fraction"] > 0
    assert all(len(c) > 0 for c in env.unwrapped.state.cached)
    env.close()


def test_llmserving_id_dispatches_on_backend() -> None:
    """gym.make("schedgym/LLMServing-v0", backend="live") is the live env; the default stays the simulator."""
    from schedgym.envs.serving.env import LLMServingEnv
    from schedgym.envs.serving.live_env import LLMServingLiveEnv
    assert type(gym.make("schedgym/LLMServing-v0").unwrapped) is LLMServingEnv
    assert type(gym.make("schedgym/LLMServing-v0", backend="sim").unwrapped) is LLMServingEnv
    w = burst(6)
    env = gym.make("schedgym/LLMServing-v0", backend="live", instance=w, token_scale=1.0, rate_scale=1.0,
                   n_engines=2, device=DEVICE)
    assert type(env.unwrapped) is LLMServingLiveEnv
    info, _ = run_episode(env)
    assert info["n_served"] == w.n_requests == env.unwrapped.validate()["n_served"]
    env.close()
    cfg_env = gym.make("schedgym/LLMServing-v0", config={"backend": "live", "n_engines": 3})
    assert type(cfg_env.unwrapped) is LLMServingLiveEnv and cfg_env.action_space.n == 3
    with pytest.raises(ValueError, match=r"backend must be one of \['sim', 'live'\], got 'gpu'"):
        gym.make("schedgym/LLMServing-v0", backend="gpu")
    with pytest.raises(ValueError, match="backend must be 'thread' or 'ray', got 'mpi'"):
        gym.make("schedgym/LLMServing-v0", backend="live", engine_backend="mpi")
