"""Fidelity: replay one trace segment with one policy on the live cluster and on the calibrated simulator,
and compare TTFT, TPOT and end-to-end latency at p50/p90/p99.

The policy is round robin over the action mask, so both sides route every request identically and the
comparison isolates the engine model (calibrated iteration times + the simulator's scheduler) from the
router. Relative error = (simulated - live) / live.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.serving.io import load_trace
from schedgym.envs.serving.live_env import CATALOG_MODELS, scale_tokens
from schedgym.envs.serving.metrics import QUANTILES
from schedgym.envs.serving.types import ServingWorkload

METRICS = ("ttft", "tpot", "e2e")


def round_robin(env: gym.Env, seed: int = 0) -> tuple[dict[str, Any], list[int]]:
    """Run one episode routing request k to the k-th valid instance in turn; returns the final info."""
    obs, info = env.reset(seed=seed)
    k, actions = 0, []
    while True:
        valid = np.flatnonzero(info["action_mask"])
        a = int(valid[k % valid.size])
        actions.append(a)
        obs, _, term, trunc, info = env.step(a)
        k += 1
        if term or trunc:
            return info, actions


def segment(trace: str, start: int, n: int, rate_scale: float, token_scale: float) -> ServingWorkload:
    w = load_trace(trace)
    return scale_tokens(w.slice(start, start + n).scaled(rate_scale), token_scale)


def fidelity(workload: ServingWorkload, calibration: str, *, n_engines: int = 2, model: str = "tiny",
             engine: dict[str, Any] | None = None, num_blocks: int = 256, context_limit: int = 512,
             device: str = "cpu", backend: str = "thread", threads: int = 1) -> dict[str, Any]:
    """Live vs simulated metrics of ``workload`` (already time- and token-scaled)."""
    eng = dict(engine or {})
    live = gym.make("schedgym/LLMServingLive-v0", instance=workload, rate_scale=1.0, token_scale=1.0,
                    n_engines=n_engines, model=model, engine=eng, num_blocks=num_blocks, context_limit=context_limit,
                    device=device, backend=backend, threads=threads, calibration=calibration)
    live_info, live_actions = round_robin(live)
    live.unwrapped.validate()
    gpu = "CPU" if device == "cpu" else "H100-80GB"
    spec = {"gpu": gpu, "model": CATALOG_MODELS[model], "max_model_len": context_limit, "calibration": calibration}
    sim = gym.make("schedgym/LLMServing-v0", instance=workload, rate_scale=1.0, cluster=[spec] * n_engines,
                   engine={**eng, "num_gpu_blocks": num_blocks}, segment_requests=None)
    sim_info, sim_actions = round_robin(sim)
    sim.unwrapped.validate()
    rows = []
    for m in METRICS:
        for q in QUANTILES:
            key = f"p{q}_{m}"
            lv, sv = live_info[key], sim_info[key]
            rows.append({"metric": key, "live": lv, "sim": sv, "rel_err": (sv - lv) / lv if lv else float("nan")})
    return {"workload": workload.name, "n_requests": workload.n_requests, "same_routing": live_actions == sim_actions,
            "rows": rows, "live": live_info, "sim": sim_info}


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"fidelity on {rep['workload']} ({rep['n_requests']} requests, identical routing: "
             f"{rep['same_routing']})", f"{'metric':10s} {'live (ms)':>11s} {'sim (ms)':>11s} {'rel err':>9s}"]
    for r in rep["rows"]:
        lines.append(f"{r['metric']:10s} {r['live'] * 1e3:11.3f} {r['sim'] * 1e3:11.3f} {r['rel_err'] * 100:8.1f}%")
    return "\n".join(lines)
