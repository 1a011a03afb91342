"""Fidelity: replay one trace segment with one policy on the live cluster and on the calibrated simulator,
and compare TTFT, TPOT and end-to-end latency at p50/p90/p99.

The policy is round robin over the action mask, so both sides route every request identically and the
comparison isolates the engine model (calibrated iteration times + the simulator's scheduler) from the
router. Relative error = (predicted - live) / live.

Two comparisons are reported: (1) from the trace's arrival times: the prediction is the simulator plus the
router's dispatch latency (trace arrival -> request at its engine: waking up, polling the engines, building the
observation, deciding, sending), taken from the calibration table when ``profiler.calibrate_live`` measured it
on its own segment, else measured beforehand by ``probe_dispatch_latency`` on a synthetic workload — a separate
live run either way, never the compared one — and added to every TTFT and E2E (a constant delay on every arrival
shifts those latencies by exactly that constant and changes nothing else in the simulation); (2) engine-side: both
sides replayed from the times each request actually reached its engine (the live run's dispatch times become
the simulated arrivals), which isolates the engine model. Iteration check: every live iteration's measured wall
time against the calibration table's time for the same batch shape (``iteration_check``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from schedgym.envs.serving.costmodel import TableCostModel, load_calibration_table
from schedgym.envs.serving.io import load_trace
from schedgym.envs.serving.live_run import CATALOG_MODELS, scale_tokens
from schedgym.envs.serving.metrics import QUANTILES, per_request
from schedgym.envs.serving.types import ServingWorkload
from schedgym.envs.serving.variability import INTERFERENCE_KEY, QUANTILES_KEY, SERVICE_KEY, router_dispatch_times
from schedgym.hwbackend.profiler import overlap_fractions

METRICS = ("ttft", "tpot", "e2e")
PROBE_REQUESTS = 16  # the host-speed probe replays the segment's first requests, separately


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


def probe_workload(n: int = 32, gap_s: float = 0.02, prompt: int = 16, output: int = 4) -> ServingWorkload:
    """The synthetic workload of the dispatch-latency probe: ``n`` equal requests every ``gap_s`` seconds."""
    return ServingWorkload(f"dispatch-probe-{n}x{gap_s:g}s", np.arange(n) * gap_s, np.full(n, prompt, np.int64),
                           np.full(n, output, np.int64))


def _replay(live_kwargs: dict[str, Any], workload: ServingWorkload) -> Any:
    """A separate live episode of ``workload`` (already scaled) with round robin on the cluster ``live_kwargs``
    describes (the live env's keyword arguments); its ``LiveRun``."""
    env = gym.make("schedgym/LLMServingLive-v0", **{**live_kwargs, "instance": workload, "rate_scale": 1.0,
                                                      "token_scale": 1.0})
    round_robin(env)
    run = env.unwrapped.state
    env.close()
    return run


def probe_dispatch_latency(live_kwargs: dict[str, Any], workload: ServingWorkload | None = None) -> float:
    """Median seconds from a request's arrival to its arrival at an engine, measured on a live episode of
    ``workload`` (default ``probe_workload()``) with the live env's keyword arguments ``live_kwargs``."""
    w = workload if workload is not None else probe_workload()
    return float(np.nanmedian(_replay(live_kwargs, w).dispatched - w.arrival))


def probe_host_speed(live_kwargs: dict[str, Any], calibration: str, workload: ServingWorkload) -> float:
    """The host's speed now against the table: the median live/table time of the iterations of a short live
    episode of ``workload`` (a separate run, never the compared one; batch shapes like the compared run's, since a
    synthetic load of tiny batches runs in another regime — on a GPU ×1.4–3.5 the table while the run ran ×1)."""
    rows = _against_table(_replay(live_kwargs, workload).seg, calibration)
    return float(np.median([wall / table for _, wall, table, _ in rows]))


def scaled_table(calibration: str, factor: float, path: str | Path) -> str:
    """A copy of the table with every time (rows, per-attention-pair cost) multiplied by ``factor``, written to
    ``path``: the measured variability (ratios to the table's times) scales with it."""
    doc = json.loads(Path(calibration).read_text())
    for row in doc["rows"]:
        row["time_s"] *= factor
    doc["attention_pair_s"] = doc.get("attention_pair_s", 0.0) * factor
    doc["drift_factor"] = factor
    Path(path).write_text(json.dumps(doc) + "\n")
    return str(path)


def run_speed(segments: list[tuple], rows: list[tuple[str, float, float, float]], n_engines: int) -> float:
    """The compared run's own speed against the table: the median live/table time of its iterations that no other
    engine overlapped (the table times an engine alone); ``rows``: ``_against_table(segments, ...)``. A
    diagnostic only — it reads the compared run."""
    inst = np.array([s[0] for s in segments])
    seg = np.array([s[1:3] for s in segments], float)
    order = np.lexsort((seg[:, 0], inst))
    lone = overlap_fractions(inst[order], seg[order], n_engines)[:, 0] >= 0.9
    ratio = np.array([wall / table for _, wall, table, _ in rows])[order]
    return float(np.median(ratio[lone] if lone.sum() >= 10 else ratio))


def _against_table(segments: list[tuple], calibration: str) -> list[tuple[str, float, float, float]]:
    """(kind, wall time, table time, engine CPU time) of every live iteration (``LiveRun.seg`` entries)."""
    cm = TableCostModel(load_calibration_table(calibration))
    return [("prefill" if D == 0 else ("decode" if P == 0 else "mixed"), t1 - t0,
             cm.iteration_time(P, D, K, prefill_context_tokens=Pc, prefill_attention_pairs=pairs), cpu_s)
            for _i, t0, t1, _n, _dec, _p, P, D, K, Pc, pairs, cpu_s in segments]


def iteration_check(rows: list[tuple[str, float, float, float]]) -> dict[str, dict[str, float]]:
    """Measured live iterations against the calibration table, per kind (prefill-only, decode-only, mixed):
    count, median and p10/p90 of live/table, ratio of the sums; and ``cpu_share``: the engine threads' CPU time
    over the iterations' wall time (on a CPU device, below 1 means the threads waited for a core: other load);
    ``rows``: ``_against_table`` of the run's ``LiveRun.seg`` entries."""
    out: dict[str, dict[str, float]] = {}
    kinds: dict[str, list[tuple[float, float]]] = {"prefill": [], "decode": [], "mixed": []}
    wall = cpu = 0.0
    for kind, w, table, cpu_s in rows:
        kinds[kind].append((w, table))
        wall, cpu = wall + w, cpu + cpu_s
    out["cpu_share"] = {"value": cpu / wall if wall else float("nan")}
    for kind, v in kinds.items():
        if not v:
            continue
        a = np.array(v)
        r = a[:, 0] / a[:, 1]
        out[kind] = {"n": float(len(v)), "median": float(np.median(r)), "p10": float(np.percentile(r, 10)),
                     "p90": float(np.percentile(r, 90)), "sum_ratio": float(a[:, 0].sum() / a[:, 1].sum())}
    return out


def _expected(workload: ServingWorkload, make: Any, runs: int, delay_q: np.ndarray | None,
              service_q: np.ndarray | None = None) -> dict[str, float]:
    """TTFT/TPOT/E2E percentiles predicted for one replay of ``workload``: each of ``runs`` seeded simulator
    episodes (``make(w)`` builds the env; requests reach their engines through the router — a one-at-a-time queue
    with service times drawn from the quantiles ``service_q`` (``variability.router_dispatch_times``) or, for a
    table without them, after delays drawn from the latency quantiles ``delay_q``, kept in trace order;
    latencies from the trace arrivals) gives the percentile over its requests, and the prediction is their mean —
    the expected value of the statistic the live run reports (a p99 over 64 requests sits between the two
    largest, below the distribution's own p99)."""
    per_run: dict[str, list[float]] = {f"p{q}_{k}": [] for k in METRICS for q in QUANTILES}
    R = workload.n_requests
    for s in range(runs):
        w = workload
        rng = np.random.default_rng([s, 0xD15])
        if service_q is not None:
            svc = np.interp(rng.random(R), np.linspace(0, 1, service_q.size), service_q)
            w = replace(workload, arrival=router_dispatch_times(workload.arrival, svc))
        elif delay_q is not None:
            d = np.interp(rng.random(R), np.linspace(0, 1, delay_q.size), delay_q)
            w = replace(workload, arrival=np.maximum.accumulate(workload.arrival + d))
        env = make(w)
        round_robin(env, seed=s)
        env.unwrapped.validate()
        sim = env.unwrapped.state
        finish = np.array(sim.finish)
        first = np.array(sim.first_token)
        m = per_request(workload.arrival, first, finish, first, workload.output_tokens)
        served = ~np.isnan(finish)
        for k in METRICS:
            for q in QUANTILES:
                per_run[f"p{q}_{k}"].append(float(np.percentile(m[k][served], q)))
    return {key: float(np.mean(v)) for key, v in per_run.items()}


def fidelity(workload: ServingWorkload, calibration: str, *, n_engines: int = 2, model: str = "tiny",
             engine: dict[str, Any] | None = None, num_blocks: int = 256, context_limit: int = 512,
             device: str = "cpu", backend: str = "thread", threads: int = 1,
             dispatch_latency_s: float | None = None, noise_runs: int = 16,
             drift_dir: str | None = None) -> dict[str, Any]:
    """Live vs predicted metrics of ``workload`` (already time- and token-scaled). ``dispatch_latency_s``:
    the router's dispatch latency added to the simulator's TTFT/E2E; None measures it first with
    ``probe_dispatch_latency`` (a separate synthetic live episode on the same cluster settings).

    When the table was fitted to a live run (it carries the measured interference, iteration-time quantiles and
    dispatch and wake latency quantiles, ``profiler.calibrate_live``) the prediction is the simulator with
    ``interference`` and ``iteration_noise`` and per-request router delays drawn from the measured
    distributions, averaged over ``noise_runs`` seeds (``_expected``: the expected statistic of one replay); the
    deterministic prediction (table times, median delay) is reported alongside (``rows_mean_model``).
    ``drift_dir``: measure the host's speed against the table just before and just after the compared run
    (``probe_host_speed``: each a separate live replay of the segment's first ``PROBE_REQUESTS`` requests) and
    simulate with the table scaled by their geometric mean (written there); None uses the table as it is. Also
    reported, as a diagnostic that reads the compared run (``rows_run_speed``): the prediction with the table
    scaled by the run's own speed."""
    eng = dict(engine or {})
    live_kwargs = dict(n_engines=n_engines, model=model, engine=eng, num_blocks=num_blocks,
                       context_limit=context_limit, device=device, backend=backend, threads=threads,
                       calibration=calibration)
    meta = json.loads(Path(calibration).read_text()) if str(calibration).endswith(".json") else {}
    source = "given"
    if dispatch_latency_s is None:
        if "dispatch_latency_s" in meta:  # measured by calibrate_live on its own (different) segment
            dispatch_latency_s = float(meta["dispatch_latency_s"]) + float(meta.get("wake_latency_s", 0.0))
            source = "calibration table (dispatch + idle-engine wake latency)"
        else:
            dispatch_latency_s, source = probe_dispatch_latency(live_kwargs), "probe"
    noisy = all(k in meta for k in (QUANTILES_KEY, INTERFERENCE_KEY, "dispatch_latency_quantiles")) and noise_runs > 0
    probes: list[float] = []
    if drift_dir is not None:
        probe = workload.slice(0, min(PROBE_REQUESTS, workload.n_requests), name=f"{workload.name}-probe")
        probes.append(probe_host_speed(live_kwargs, calibration, probe))
    live = gym.make("schedgym/LLMServingLive-v0", instance=workload, rate_scale=1.0, token_scale=1.0,
                    **live_kwargs)
    live_info, live_actions = round_robin(live)
    live.unwrapped.validate()
    run = live.unwrapped.state
    live.close()
    drift, sim_table = 1.0, calibration
    if drift_dir is not None:  # the host's speed just before and just after the run (geometric mean)
        probes.append(probe_host_speed(live_kwargs, calibration, probe))
        drift = float(np.sqrt(probes[0] * probes[1]))
        sim_table = scaled_table(calibration, drift, Path(drift_dir) / f"{Path(calibration).stem}.drift.json")
    gpu = "CPU" if device == "cpu" else "H100-80GB"
    spec = {"gpu": gpu, "model": CATALOG_MODELS[model], "max_model_len": context_limit, "calibration": sim_table}

    def make(w: ServingWorkload, measured: bool = False, table: str | None = None) -> gym.Env:
        inst = spec if table is None else {**spec, "calibration": table}
        return gym.make("schedgym/LLMServing-v0", instance=w, rate_scale=1.0, cluster=[inst] * n_engines,
                        engine={**eng, "num_gpu_blocks": num_blocks}, segment_requests=None,
                        interference=measured, iteration_noise=measured)

    def simulate(w: ServingWorkload) -> tuple[dict[str, Any], list[int]]:
        sim = make(w)
        out = round_robin(sim)
        sim.unwrapped.validate()
        return out

    sim_info, sim_actions = simulate(workload)
    d = float(dispatch_latency_s)
    predicted = {k: v + (d if k.endswith(("_ttft", "_e2e")) else 0.0) for k, v in sim_info.items()
                 if isinstance(v, float)}
    mean_rows = _compare(live_info, predicted)
    rows, speed_rows = mean_rows, []
    against = _against_table(run.seg, calibration)
    speed = run_speed(run.seg, against, n_engines)
    if noisy:
        delay_q = np.array(meta["dispatch_latency_quantiles"])
        service_q = np.array(meta[SERVICE_KEY]) if SERVICE_KEY in meta else None
        rows = _compare(live_info, _expected(workload, lambda w: make(w, True), noise_runs, delay_q, service_q))
        # Diagnostic: the same prediction had the table been scaled by the compared run's own speed (its lone
        # iterations' median live/table time): the model's error with the host's drift taken out.
        with tempfile.TemporaryDirectory() as tmp:
            at_speed = scaled_table(calibration, speed, Path(tmp) / "run-speed.json")
            speed_rows = _compare(live_info, _expected(workload, lambda w: make(w, True, at_speed), noise_runs,
                                                       delay_q, service_q))
    # Engine-side: arrivals = when each request reached its engine (served requests only are dispatched).
    # Requests the engines cannot hold (prompt + output over the context limit) are rejected on both sides and
    # never dispatched: the engine-side replay is the served requests alone.
    served = np.flatnonzero(~np.isnan(run.dispatched))
    engine_rows: list[dict[str, Any]] = []
    dispatch_ms = float(np.median(run.dispatched[served] - workload.arrival[served]) * 1e3) if served.size \
        else float("nan")
    disp = run.dispatched[served]
    if served.size and (np.diff(disp) >= 0).all():
        t0 = disp[0]
        w2 = replace(workload, name=f"{workload.name}@dispatch", arrival=disp - t0,
                     prompt_tokens=workload.prompt_tokens[served], output_tokens=workload.output_tokens[served],
                     priority=workload.priority[served], prefix_hashes=None, prefix_offsets=None, workflows=None)
        m = per_request(disp - t0, run.first_token[served] - t0, run.finish[served] - t0,
                        run.first_token[served] - t0, workload.output_tokens[served])
        live2 = {f"p{q}_{k}": float(np.percentile(m[k], q)) for k in METRICS for q in QUANTILES}
        sim2 = _expected(w2, lambda w: make(w, True), noise_runs, None) if noisy else simulate(w2)[0]
        engine_rows = _compare(live2, sim2)
    return {"workload": workload.name, "n_requests": workload.n_requests, "same_routing": live_actions == sim_actions,
            "calibration": calibration, "calibration_source": meta.get("source", "not recorded"),
            "dispatch_latency_model_ms": d * 1e3, "dispatch_latency_source": source, "host_drift": drift,
            "host_probes": probes, "run_speed": speed,
            "prediction": f"simulator with measured interference, iteration noise and router delays, "
                          f"mean over {noise_runs} seeds"
                          if noisy else "simulator (table times) + median router delay",
            "rows": rows, "rows_mean_model": mean_rows if noisy else [], "rows_run_speed": speed_rows,
            "engine_rows": engine_rows,
            "median_dispatch_latency_ms": dispatch_ms,
            "iterations": iteration_check(against),
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
             f"{rep['same_routing']}; calibration {rep['calibration']}: {rep['calibration_source']}; dispatch latency: "
             f"{rep['dispatch_latency_model_ms']:.2f} ms from the {rep['dispatch_latency_source']} (added to the "
             f"simulated TTFT/E2E), this run "
             f"{rep['median_dispatch_latency_ms']:.2f} ms (median); host speed probe: table times x"
             f"{rep['host_drift']:.2f} in the simulator"
             + (" (before/after the run x" + "/x".join(f"{p:.2f}" for p in rep["host_probes"]) + ")"
                if rep["host_probes"] else "") + f"; the run's own speed x{rep['run_speed']:.2f})",
             "live iteration time / table time for the same shape: " + "; ".join(
                 f"{k} n={int(v['n'])} median x{v['median']:.2f} (p10 {v['p10']:.2f}, p90 {v['p90']:.2f})"
                 for k, v in rep["iterations"].items() if k != "cpu_share")
             + f"; engine threads' CPU time / iteration wall time {rep['iterations']['cpu_share']['value']:.2f}"]
    for title, key in ((f"from trace arrivals (prediction: {rep['prediction']})", "rows"),
                       ("from trace arrivals, deterministic model (table times + median router delay)",
                        "rows_mean_model"),
                       ("diagnostic, reads the compared run: the prediction with the table scaled by the run's "
                        "own speed (host drift taken out)", "rows_run_speed"),
                       ("engine-side (arrivals = dispatch times)", "engine_rows")):
        if not rep[key]:
            continue
        lines += [title, f"{'metric':10s} {'live (ms)':>11s} {'pred (ms)':>11s} {'rel err':>9s}"]
        for r in rep[key]:
            lines.append(f"{r['metric']:10s} {r['live'] * 1e3:11.3f} {r['sim'] * 1e3:11.3f} "
                         f"{r['rel_err'] * 100:8.1f}%")
    return "\n".join(lines)
