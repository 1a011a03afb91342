"""One trace segment three ways: the calibrated simulator (``LLMServing-v0``), the live env
(``LLMServingLive-v0``, engines in threads of this process) and the served app (Ray Serve replicas behind HTTP,
replayed by ``loadtest``), with TTFT / TPOT / E2E percentiles side by side.

What differs, by design: the simulator's clock is the calibration table; the live env dispatches in-process
(poll, decide, submit); the served path adds HTTP, the Serve proxy, the ingress, the router's routing-stats
delay and SSE streaming back to a client, and measures at the client. Round robin routes identically on all
three (replica order = index order), so their gap is the serving stack, not the router; the other baselines
run unchanged on all three (the live env's state offers the simulator's view).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schedgym.envs.serving.metrics import QUANTILES
from schedgym.envs.serving.types import ServingWorkload
from schedgym.hwbackend.serve.state import SERVING, ReplicaSpec, load_policy

METRICS = ("ttft", "tpot", "e2e")
KEYS = tuple(f"p{q}_{m}" for m in METRICS for q in QUANTILES)


def simulated(w: ServingWorkload, spec: ReplicaSpec, replicas: int, policy: str, calibration: str,
              seed: int = 0) -> dict[str, float]:
    """``policy`` on the simulator with the live engines' configuration and a calibration table (validated)."""
    from schedgym.evaluation import run_episode

    inst = spec.instance
    cluster = [{"gpu": inst.gpu, "model": inst.model, "max_model_len": inst.context_limit,
                "calibration": calibration}] * replicas
    kw = {"rate_scale": 1.0, "cluster": cluster, "engine": {**spec.engine, "num_gpu_blocks": spec.num_blocks},
          "segment_requests": None}
    row = run_episode(SERVING, load_policy(policy), w, seed, env_kwargs=kw)
    return {k: float(row[k]) for k in KEYS} | {"n_served": float(row["n_served"])}


def live_env(w: ServingWorkload, spec: ReplicaSpec, replicas: int, policy: str = "round_robin",
             seed: int = 0) -> dict[str, float]:
    """``policy`` (a baseline name) on ``LLMServingLive-v0`` (thread engines) with the replicas' configuration,
    through the evaluation harness (validated)."""
    from schedgym.evaluation import run_episode
    from schedgym.policy import make_policy

    live = "schedgym/LLMServingLive-v0"
    kw = {"rate_scale": 1.0, "token_scale": 1.0, "n_engines": replicas, "model": spec.model,
          "engine": dict(spec.engine), "num_blocks": spec.num_blocks, "context_limit": spec.context_limit,
          "device": spec.device, "threads": spec.threads, "weights_seed": spec.weights_seed}
    row = run_episode(live, make_policy(live, policy), w, seed, env_kwargs=kw)
    return {k: float(row[k]) for k in KEYS} | {"n_served": float(row["n_served"])}


def served(w: ServingWorkload, spec: ReplicaSpec, replicas: int, policies: list[str], *, port: int = 8000,
           cpus_per_replica: float = 0.5, timeout_s: float = 120.0) -> dict[str, dict[str, Any]]:
    """Each policy's load-test report against a fresh deployment of the app (Ray must be initialised); a policy
    listed twice is run twice (keys ``name``, ``name #2``, ...)."""
    from ray import serve

    from schedgym.hwbackend.serve.app import start
    from schedgym.hwbackend.serve.loadtest import run_load

    out: dict[str, dict[str, Any]] = {}
    try:
        for pol in policies:
            url = start(spec, replicas, pol, port=port, cpus_per_replica=cpus_per_replica)
            rep = run_load(url, w, timeout_s=timeout_s).report()
            rep["n_served"] = float(rep["n_ok"])
            rep["router"] = _router_outcomes(url)
            key, k = pol, 1
            while key in out:  # a policy listed again: a repeat run (run-to-run noise)
                k += 1
                key = f"{pol} #{k}"
            out[key] = rep
            serve.delete("schedgym")
    finally:
        serve.shutdown()
    return out


def _router_outcomes(url: str) -> dict[str, int]:
    """The router's decision counts by outcome (policy / each fallback reason)."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/v1/router", timeout=10) as r:
        routers = json.loads(r.read())["routers"]
    return routers[0]["outcomes"] if routers else {}


def format_table(columns: dict[str, dict[str, Any]]) -> str:
    """Rows = metrics (ms), columns = the given runs."""
    names = list(columns)
    width = max(12, *(len(n) for n in names))
    lines = [f"{'metric':10s} " + " ".join(f"{n:>{width}s}" for n in names)]
    for k in KEYS:
        cells = []
        for n in names:
            v = columns[n].get(k, float("nan"))
            cells.append(f"{v * 1e3:{width}.1f}" if np.isfinite(v) else f"{'-':>{width}s}")
        lines.append(f"{k + ' ms':10s} " + " ".join(cells))
    lines.append(f"{'served':10s} " + " ".join(f"{int(columns[n].get('n_served', 0)):>{width}d}" for n in names))
    return "\n".join(lines)
