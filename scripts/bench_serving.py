"""Speed of LLMServing-v0 on one core: simulated requests per wall-second and routing decisions per second.

1. Simulator throughput: the whole Azure conv 2023 trace (19,366 requests, 1 h) on 8 instances of
   Llama-3-8B on H100, routed by a fixed baseline (round-robin) directly through ``ClusterSim`` (no
   observations), then drained. Reference: Vidur manages about 160-280 simulated requests per second here.
2. Decisions through ``gym.step``: the same replay through the Gymnasium env (observation built at every
   arrival), a round-robin action over the mask.

Usage: python scripts/bench_serving.py [--repeats 3] [--rate-scale 1.0]
Prints the best of ``--repeats`` runs (process CPU time, so other jobs on the machine matter less).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import gymnasium as gym
import numpy as np

import schedgym  # noqa: F401  (registers the env)
from schedgym.envs.serving.cluster import resolve_cluster
from schedgym.envs.serving.io import load_trace
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import ClusterSpec


def sim_only(rate_scale: float) -> tuple[float, int, ClusterSim]:
    w = load_trace("azure-conv-2023").scaled(rate_scale)
    cluster = ClusterSpec(resolve_cluster("h100-8"))
    t0 = time.process_time()
    sim = ClusterSim.build(w, cluster)
    n = len(sim.engines)
    nxt = 0
    while (r := sim.next_decision()) is not None:
        while not sim.feasible[r, nxt]:
            nxt = (nxt + 1) % n
        sim.route(r, nxt)
        nxt = (nxt + 1) % n
    sim.drain()
    return time.process_time() - t0, w.n_requests, sim


def through_gym(rate_scale: float) -> tuple[float, int]:
    w = load_trace("azure-conv-2023")
    env = gym.make("schedgym/LLMServing-v0", instance=w, cluster="h100-8", rate_scale=rate_scale)
    t0 = time.process_time()
    obs, info = env.reset(seed=0)
    steps, nxt, done = 0, 0, False
    while not done:
        mask = info["action_mask"]
        while not mask[nxt]:
            nxt = (nxt + 1) % mask.size
        obs, _, term, trunc, info = env.step(nxt)
        nxt = (nxt + 1) % mask.size
        steps += 1
        done = term or trunc
    return time.process_time() - t0, steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rate-scale", type=float, default=1.0)
    args = ap.parse_args()
    print(f"$ python scripts/bench_serving.py --repeats {args.repeats} --rate-scale {args.rate_scale}")
    print(f"(one process, CPU time; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    best = min((sim_only(args.rate_scale) for _ in range(args.repeats)), key=lambda x: x[0])
    el, n, sim = best
    ttft = np.array(sim.first_token) - np.array(sim.arrival)
    print(f"simulator: Azure conv 2023 x{args.rate_scale:g}, {n} requests on 8 x H100/Llama-3-8B, round-robin: "
          f"{el:.2f} s -> {n / el:,.0f} simulated requests/s ({len(sim.seg_log):,} iteration segments, "
          f"{len(sim.rejected)} rejected, p99 TTFT {np.nanpercentile(ttft, 99):.3f} s, "
          f"simulated span {sim.now:,.0f} s)")
    el, steps = min((through_gym(args.rate_scale) for _ in range(args.repeats)), key=lambda x: x[0])
    print(f"gym.step: {steps} routing decisions in {el:.2f} s -> {steps / el:,.0f} decisions/s (env reset included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
