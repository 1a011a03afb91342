"""Fidelity: replay one trace segment with one policy on the live cluster and on the calibrated simulator,
and compare TTFT, TPOT and end-to-end latency at p50/p90/p99.

The policy is round robin over the action mask, so both sides route every request identically and the
comparison isolates the engine model (calibrated iteration times + the simulator's scheduler) from the
router. Relative error = (simulated - live) / live.

Two comparisons are reported: (1) from the trace's arrival times, which charges the live side with the
router's real dispatch latency (polling engines, deciding, sending), something the simulator does not model;
(2) engine-side: both sides replayed from the times each request actually reached its engine (the live
run's dispatch times become the simulated arrivals), which isolates the engine model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.serving.io import load_trace
from schedgym.envs.serving.live_env import CATALOG_MODELS, scale_tokens
from schedgym.envs.serving.metrics import QUANTILES, per_request
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
    run = live.unwrapped.state
    gpu = "CPU" if device == "cpu" else "H100-80GB"
    spec = {"gpu": gpu, "model": CATALOG_MODELS[model], "max_model_len": context_limit, "calibration": calibration}

    def simulate(w: ServingWorkload) -> tuple[dict[str, Any], list[int]]:
        sim = gym.make("schedgym/LLMServing-v0", instance=w, rate_scale=1.0, cluster=[spec] * n_engines,
                       engine={**eng, "num_gpu_blocks": num_blocks}, segment_requests=None)
        out = round_robin(sim)
        sim.unwrapped.validate()
        return out

    sim_info, sim_actions = simulate(workload)
    rows = _compare(live_info, sim_info)
    # Engine-side: arrivals = when each request reached its engine (served requests only are dispatched).
    served = ~np.isnan(run.dispatched)
    engine_rows: list[dict[str, Any]] = []
    dispatch_ms = float("nan")
    if served.all() and (np.diff(run.dispatched) >= 0).all():
        w2 = replace(workload, name=f"{workload.name}@dispatch", arrival=run.dispatched - run.dispatched[0])
        t0 = run.dispatched[0]
        m = per_request(run.dispatched - t0, run.first_token - t0, run.finish - t0, run.first_token - t0,
                        workload.output_tokens)
        live2 = {f"p{q}_{k}": float(np.percentile(m[k], q)) for k in METRICS for q in QUANTILES}
        sim2, _ = simulate(w2)
        engine_rows = _compare(live2, sim2)
        dispatch_ms = float(np.median(run.dispatched - workload.arrival) * 1e3)
    # Per-iteration check: measured prefill-only iterations against the table's time for the same shape.
    from schedgym.envs.serving.costmodel import TableCostModel, load_calibration_table
    cm = TableCostModel(load_calibration_table(calibration))
    sched = live.unwrapped.schedule()
    pre = ~sched.seg_decode & (sched.seg_prefill_tokens > 0)
    ratio = [(e - s0) / cm.iteration_time(int(p), 0, 0) for s0, e, p in
             zip(sched.seg_start[pre], sched.seg_end[pre], sched.seg_prefill_tokens[pre])]
    iter_ratio = float(np.median(ratio)) if ratio else float("nan")
    return {"workload": workload.name, "n_requests": workload.n_requests, "same_routing": live_actions == sim_actions,
            "rows": rows, "engine_rows": engine_rows, "median_dispatch_latency_ms": dispatch_ms,
            "prefill_iteration_live_over_table": iter_ratio,
            "live": live_info, "sim": sim_info}


def _compare(live: dict[str, Any], sim: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for m in METRICS:
        for q in QUANTILES:
            key = f"p{q}_{m}"
            lv, sv = live[key], sim[key]
            rows.append({"metric": key, "live": lv, "sim": sv, "rel_err": (sv - lv) / lv if lv else float("nan")})
    return rows


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"fidelity on {rep['workload']} ({rep['n_requests']} requests, identical routing: "
             f"{rep['same_routing']}; median dispatch latency {rep['median_dispatch_latency_ms']:.2f} ms; "
             f"prefill iterations live/table x{rep['prefill_iteration_live_over_table']:.2f} (median))"]
    for title, key in (("from trace arrivals (includes router dispatch latency)", "rows"),
                       ("engine-side (arrivals = dispatch times)", "engine_rows")):
        if not rep[key]:
            continue
        lines += [title, f"{'metric':10s} {'live (ms)':>11s} {'sim (ms)':>11s} {'rel err':>9s}"]
        for r in rep[key]:
            lines.append(f"{r['metric']:10s} {r['live'] * 1e3:11.3f} {r['sim'] * 1e3:11.3f} "
                         f"{r['rel_err'] * 100:8.1f}%")
    return "\n".join(lines)
