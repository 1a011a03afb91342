"""Benchmark: decisions per second of schedgym/DAGDispatch-v0 on a stream of random 100-task DAGs on 8 PEs.

Default instance: ``dag/stream-layered-100`` test instance 0 (8 jobs x 100 tasks, Poisson arrivals at load
0.7, the 8-PE SoC platform; 800 tasks, A = 6401 actions). Random masked policies' action sequences are
recorded
first and replayed in the timed loop (same seed => same trajectory), so the env figure excludes the policy;
the end-to-end figures add a live policy (random masked; MCT; HEFT) for reference.

    python scripts/bench_dag.py [--dataset dag/stream-layered-100] [--index 0] [--seconds 5] [--noise 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401  (registers the env ids)
from schedgym import datasets
from schedgym.policy import make_policy

ENV_ID = "schedgym/DAGDispatch-v0"


def record_random_episodes(env: Any, n: int, seed: int) -> list[list[int]]:
    """Action sequences of a uniform random masked policy (wait included when valid), one per policy seed."""
    out = []
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        _, info = env.reset(seed=seed)
        seq, done = [], False
        while not done:
            valid = np.flatnonzero(info["action_mask"])
            a = int(valid[rng.integers(valid.size)])
            _, _, term, trunc, info = env.step(a)
            seq.append(a)
            done = term or trunc
        out.append(seq)
    return out


def time_replay(env: Any, episodes: list[list[int]], seed: int, seconds: float) -> tuple[float, float]:
    """(decisions/s of step() alone, seconds per reset()) replaying recorded episodes for ``seconds``."""
    t_step = t_reset = 0.0
    n_dec = n_ep = 0
    clock = time.perf_counter
    while t_step + t_reset < seconds:
        seq = episodes[n_ep % len(episodes)]
        t0 = clock()
        env.reset(seed=seed)
        t1 = clock()
        step = env.step
        for a in seq:
            step(a)
        t2 = clock()
        t_reset += t1 - t0
        t_step += t2 - t1
        n_dec += len(seq)
        n_ep += 1
    return n_dec / t_step, t_reset / n_ep


def time_policy(env: Any, name: str, seed: int, seconds: float) -> float:
    """Decisions/s of a live baseline policy acting in the env (policy + env, resets excluded)."""
    n_dec, t_run = 0, 0.0
    while t_run < seconds:
        obs, info = env.reset(seed=seed)
        pol = make_policy(ENV_ID, name)
        pol.reset(env, seed=seed)
        t0, done = time.perf_counter(), False
        while not done:
            obs, _, term, trunc, info = env.step(pol.act(obs, info))
            n_dec += 1
            done = term or trunc
        t_run += time.perf_counter() - t0
    return n_dec / t_run


def fmt(xs: list[float], unit: str = "decisions/s", scale: float = 1.0, digits: int = 0) -> str:
    med = statistics.median(xs) * scale
    return (
        f"{med:>10,.{digits}f} {unit}   (median of {len(xs)}; min {min(xs) * scale:,.{digits}f}, "
        f"max {max(xs) * scale:,.{digits}f})"
    )


def bench_dag(
    dataset: str = "dag/stream-layered-100",
    index: int = 0,
    seconds: float = 5.0,
    repeats: int = 3,
    noise: float = 0.0,
    seed: int = 0,
    policies: tuple[str, ...] = ("random", "mct", "heft"),
) -> dict[str, Any]:
    """Run the benchmark, print the figures and return them (for ``bench_envs.py`` to include)."""
    ds, split = datasets.parse(dataset)
    inst = ds.load(ds.names(split)[index])
    env = gym.make(ENV_ID, instance=inst, noise=noise)
    raw: Any = env.unwrapped
    raw.reset(seed=seed)
    print(
        f"env: {ENV_ID} instance={inst.name} ({inst.n_jobs} jobs, {inst.n_tasks} tasks, "
        f"{inst.workload.n_edges} edges, platform {inst.platform.name} with {inst.n_pes} PEs), "
        f"noise={noise}, "
        f"obs nodes={raw.n_nodes}, actions={raw.action_space.n}"
    )
    episodes = record_random_episodes(raw, 4, seed)
    print(
        f"random masked episodes: {statistics.mean(map(len, episodes)):.0f} decisions each (waits included)"
    )
    raw_runs = [time_replay(raw, episodes, seed, seconds) for _ in range(repeats)]
    wrapped_runs = [time_replay(env, episodes, seed, seconds) for _ in range(repeats)]
    out = {
        "env_step": statistics.median(r[0] for r in raw_runs),
        "wrapped_step": statistics.median(r[0] for r in wrapped_runs),
    }
    print("recorded random masked actions replayed; step() returns obs, reward, flags, info")
    print(f"  env.unwrapped.step           {fmt([r[0] for r in raw_runs])}")
    print(f"  gym.make(...).step           {fmt([r[0] for r in wrapped_runs])}")
    print(f"  env.unwrapped.reset          {fmt([r[1] for r in raw_runs], 'ms/episode', 1e3, 2)}")
    print("live policy + env (unwrapped), resets excluded")
    for name in policies:
        runs = [time_policy(raw, name, seed, seconds) for _ in range(repeats)]
        out[f"policy_{name}"] = statistics.median(runs)
        print(f"  {name:<28} {fmt(runs)}")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--dataset", default="dag/stream-layered-100", help="dataset NAME[:SPLIT] (default split test)"
    )
    p.add_argument("--index", type=int, default=0, help="instance index in the split")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.0, help="runtime noise (coefficient of variation)")
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    if ns.seconds <= 0 or ns.repeats < 1 or ns.index < 0:
        p.error("--seconds must be > 0, --repeats >= 1 and --index >= 0")
    print(
        "command: "
        + " ".join(
            [os.path.basename(sys.executable)] + (sys.argv if argv is None else ["bench_dag.py", *argv])
        )
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: nproc={os.cpu_count()}, load average {load:.2f}, "
        f"{platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}"
    )
    bench_dag(ns.dataset, ns.index, ns.seconds, ns.repeats, ns.noise, ns.seed)


if __name__ == "__main__":
    main()
