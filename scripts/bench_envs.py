"""Benchmark: dispatch decisions per second of schedgym/JobShop-v0 under a random masked policy.

One env, one process, observations included. The random masked policy's actions are drawn before the
timed loops (a random masked policy only needs to know which jobs are unfinished, i.e. how many times each
job was picked), so the env figures exclude the policy; the policy's own cost is measured and printed
separately, and an end-to-end figure (wrapped env + live policy + resets) is printed for reference.

    python scripts/bench_envs.py --instance ta01 --seconds 5 [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401  (registers the env ids)

ENV_ID = "schedgym/JobShop-v0"


@dataclass(frozen=True)
class BenchArgs:
    instance: str = "ta01"
    seconds: float = 5.0  # wall time of each repeat of each measurement
    repeats: int = 3
    batch: int = 0  # > 0: also time the batched simulator stepping this many envs at once
    seed: int = 0
    dag: bool = True  # also benchmark DAGDispatch-v0 (scripts/bench_dag.py)


def parse_args(argv: list[str] | None = None) -> BenchArgs:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instance", default=BenchArgs.instance, help="benchmark name or instance file")
    p.add_argument("--seconds", type=float, default=BenchArgs.seconds, help="duration of each repeat")
    p.add_argument("--repeats", type=int, default=BenchArgs.repeats)
    p.add_argument("--batch", type=int, default=BenchArgs.batch, help="batched path: envs (0 = off)")
    p.add_argument("--seed", type=int, default=BenchArgs.seed)
    p.add_argument("--no-dag", action="store_true", help="skip the DAGDispatch-v0 benchmark")
    ns = p.parse_args(argv)
    if ns.seconds <= 0 or ns.repeats < 1 or ns.batch < 0:
        p.error("--seconds must be > 0, --repeats >= 1 and --batch >= 0")
    return BenchArgs(ns.instance, ns.seconds, ns.repeats, ns.batch, ns.seed, not ns.no_dag)


def random_masked_episodes(rng: np.random.Generator, n_jobs: int, n_ops: int, n_episodes: int,
                           ) -> list[list[int]]:
    """Action sequences of a random masked policy: each step picks a uniformly random unfinished job."""
    episodes = []
    for u in rng.random((n_episodes, n_jobs * n_ops)).tolist():
        left, live, seq = [n_ops] * n_jobs, list(range(n_jobs)), []
        for x in u:
            i = int(x * len(live))
            j = live[i]
            seq.append(j)
            left[j] -= 1
            if not left[j]:
                live.pop(i)
        episodes.append(seq)
    return episodes


def time_steps(env: Any, episodes: list[list[int]], seconds: float) -> tuple[float, float, float]:
    """(decisions/s of step() alone, seconds per reset(), decisions per CPU-second of step()).

    Cycles through ``episodes`` for ``seconds``. The CPU-time figure leaves out time the process spent
    descheduled, so it moves less than the wall-clock one when other processes load the machine.
    """
    step, t_step, t_reset, cpu_step, n_dec, n_ep = env.step, 0.0, 0.0, 0.0, 0, 0
    clock, cpu = time.perf_counter, time.process_time
    while t_step + t_reset < seconds:
        seq = episodes[n_ep % len(episodes)]
        t0 = clock()
        env.reset()
        t1, c1 = clock(), cpu()
        for a in seq:
            step(a)
        t2, c2 = clock(), cpu()
        t_reset += t1 - t0
        t_step += t2 - t1
        cpu_step += c2 - c1
        n_dec += len(seq)
        n_ep += 1
    return n_dec / t_step, t_reset / n_ep, n_dec / cpu_step


def time_end_to_end(env: Any, seed: int, seconds: float) -> float:
    """Decisions/s of a plain loop: reset, then the live random masked policy until the episode ends."""
    rng = np.random.default_rng(seed)
    n_dec, t0, clock = 0, time.perf_counter(), time.perf_counter
    u = rng.random(1 << 20).tolist()
    while clock() - t0 < seconds:
        _, info = env.reset()
        done = False
        while not done:
            valid = np.flatnonzero(info["action_mask"])
            a = int(valid[int(u[n_dec & 0xFFFFF] * valid.size)])
            _, _, term, trunc, info = env.step(a)
            done = term or trunc
            n_dec += 1
    return n_dec / (clock() - t0)


def time_policy(env: Any, episodes: list[list[int]], n: int = 200_000) -> float:
    """Seconds per decision of the live random masked policy (flatnonzero of the mask + a uniform draw)."""
    env.reset()
    masks, u = [], np.random.default_rng(1).random(n).tolist()
    for a in episodes[0]:
        _, _, _, _, info = env.step(a)
        masks.append(info["action_mask"])
    t0 = time.perf_counter()
    for i in range(n):
        valid = np.flatnonzero(masks[i % len(masks)])
        int(valid[int(u[i] * valid.size)]) if valid.size else 0
    return (time.perf_counter() - t0) / n


def repeat(fn: Callable[[], Any], k: int) -> list[Any]:
    return [fn() for _ in range(k)]


def fmt(xs: list[float], unit: str = "decisions/s", scale: float = 1.0, digits: int = 0) -> str:
    med = statistics.median(xs) * scale
    lo, hi = min(xs) * scale, max(xs) * scale
    return f"{med:>12,.{digits}f} {unit}   (median of {len(xs)}; min {lo:,.{digits}f}, max {hi:,.{digits}f})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"machine: nproc={os.cpu_count()} ({usable} usable), {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, "
          f"numpy {np.__version__}, gymnasium {gym.__version__}")
    print(f"load average at start: {_load()}")
    env = gym.make(ENV_ID, instance=args.instance)
    raw: Any = env.unwrapped
    raw.reset(seed=args.seed)
    st = raw.state
    chain = []
    e: Any = env
    while hasattr(e, "env"):
        chain.append(type(e).__name__)
        e = e.env
    print(f"env: {ENV_ID} instance={args.instance} ({st.n_jobs}x{st.n_ops}, {st.n_jobs * st.n_ops} decisions"
          f"/episode), gym.make wrappers: {' > '.join(chain)} > {type(raw).__name__}")
    episodes = random_masked_episodes(np.random.default_rng(args.seed), st.n_jobs, st.n_ops, 64)

    raw_runs = repeat(lambda: time_steps(raw, episodes, args.seconds), args.repeats)
    wrapped_runs = repeat(lambda: time_steps(env, episodes, args.seconds), args.repeats)
    policy = repeat(lambda: time_policy(raw, episodes), args.repeats)
    e2e = repeat(lambda: time_end_to_end(env, args.seed, args.seconds), args.repeats)
    print("random masked policy, actions drawn before the timed loops; step() returns obs, reward, flags, "
          "info")
    print(f"  env.unwrapped.step          {fmt([r[0] for r in raw_runs])}")
    print(f"  gym.make(...).step          {fmt([r[0] for r in wrapped_runs])}")
    print(f"  env.unwrapped.step          {fmt([r[2] for r in raw_runs], 'decisions/CPU-s')}")
    print(f"  gym.make(...).step          {fmt([r[2] for r in wrapped_runs], 'decisions/CPU-s')}")
    print(f"  env.unwrapped.reset         {fmt([r[1] for r in raw_runs], 'us/episode', 1e6, 1)}")
    print(f"  gym.make(...).reset         {fmt([r[1] for r in wrapped_runs], 'us/episode', 1e6, 1)}")
    print(f"  policy alone (flatnonzero)  {fmt(policy, 'us/decision', 1e6, 2)}")
    print(f"  end to end (wrapped env + live policy + resets) {fmt(e2e)}")
    if args.batch:
        from schedgym.envs.jobshop.batched import BatchedJobShop

        rng = np.random.default_rng(args.seed + 1)
        pool = random_masked_episodes(rng, st.n_jobs, st.n_ops, 2 * args.batch)
        print(f"batched simulator: BatchedJobShop, B={args.batch} copies of {args.instance} stepped together "
              f"(same random masked policy, drawn beforehand; obs, reward, flags, info per step)")
        for copy in (True, False):
            batched = BatchedJobShop([raw.instance] * args.batch, copy=copy)
            runs = [time_batched(batched, pool, args.seconds) for _ in range(args.repeats)]
            label = "fresh obs copies" if copy else "copy=False (obs = internal buffers)"
            print(f"  step, {label:35s} {fmt([r[0] for r in runs])}")
        print(f"  reset of all B envs                 {fmt([r[1] for r in runs], 'us/env', 1e6, 2)}")
    if args.dag:
        from bench_dag import bench_dag  # sibling script: scripts/ is on sys.path when run as a script

        print("\nDAGDispatch-v0: 100-task random DAG stream on 8 PEs")
        bench_dag(seconds=args.seconds, repeats=args.repeats, seed=args.seed)
    print(f"load average at end: {_load()}")


def _load() -> str:
    """1/5/15-minute load averages: other processes on the machine slow the wall-clock figures."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def time_batched(env: Any, pool: list[list[int]], seconds: float) -> tuple[float, float]:
    """(decisions/s of BatchedJobShop.step, seconds of reset() per env), B episodes at a time."""
    B, n_dec, t_step, t_reset, n_round, clock = env.n_envs, 0, 0.0, 0.0, 0, time.perf_counter
    while t_step + t_reset < seconds:
        first = (n_round * B) % len(pool)
        actions = np.array([pool[(first + b) % len(pool)] for b in range(B)]).T.copy()  # (T, B)
        t0 = clock()
        env.reset()
        t1 = clock()
        for a in actions:
            env.step(a)
        t2 = clock()
        t_reset, t_step = t_reset + t1 - t0, t_step + t2 - t1
        n_dec += actions.size
        n_round += 1
    return n_dec / t_step, t_reset / (n_round * B)


if __name__ == "__main__":
    main()
