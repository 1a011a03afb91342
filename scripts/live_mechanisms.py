"""Issue 8 on live engines: Llumnix migration vs dispatch only, and disaggregated vs colocated prefill/decode.

Every episode runs real torch engines (``schedgym/LLMServingLive-v0``) on windows of the Azure conversation
trace (test split) and is checked by the simulator's validator; the figures printed are the validator's.

    python scripts/live_mechanisms.py                       # tiny model, CPU, both experiments
    python scripts/live_mechanisms.py --only migration --windows 3 --rate-scale 6

Migration: the same router (``--router``, default Llumnix's freeness dispatch) with and without the
``migration="llumnix"`` preset, on KV-tight engines (``--num-blocks``) at a high replay rate. Disaggregation:
``--engines`` engines colocated vs ``disagg={"n_prefill": engines - 1}`` (same number of engines), JSQ routing.
On a CPU the engines share a few cores (and, with ``backend="thread"``, one Python GIL), so engines do not run
independently as GPUs would: read the figures with the load average printed next to them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Any

import numpy as np
import torch

import schedgym  # noqa: F401
from schedgym import datasets
from schedgym.evaluation import run_episode
from schedgym.policy import make_policy

ENV_ID = "schedgym/LLMServingLive-v0"
COLS = ("p50_ttft", "p99_ttft", "p99_tpot", "p99_e2e", "preemptions", "migrations", "slo_attainment",
        "goodput_rps")


def windows(n_req: int, k: int) -> list[Any]:
    """``k`` consecutive-request windows of the Azure conversation trace's test split (seeded)."""
    sampler = datasets.get("serving/azure-conv-2023").meta["sampler"]["test"]
    rng = np.random.default_rng(0)
    return [sampler(rng, n_req) for _ in range(k)]


def compare(ws: list[Any], settings: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Validated metrics of every (router, env kwargs) setting on every window; the settings of one window run
    back to back, so a change in the machine's load hits them alike."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    for j, w in enumerate(ws):
        for name, (router, kw) in settings.items():
            rows[name].append(run_episode(ENV_ID, make_policy(ENV_ID, router), w, j, env_kwargs=kw))
    return rows


def show(title: str, rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Print the mean over windows of each setting and each window's p99 TTFT; return the means."""
    print(f"\n{title}")
    print(f"{'setting (mean of windows)':<28}" + "".join(f"{c:>15}" for c in COLS))
    means = {name: {c: float(np.mean([r[c] for r in rs])) for c in COLS} for name, rs in rows.items()}
    for name, m in means.items():
        print(f"{name:<28}" + "".join(f"{m[c]:>15.1f}" if c in ("preemptions", "migrations") else f"{m[c]:>15.4f}"
                                      for c in COLS))
    for name, rs in rows.items():
        print(f"  p99 TTFT per window, {name}: " + " ".join(f"{r['p99_ttft']:.3f}" for r in rs))
    return means


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("migration", "disagg"), default=None)
    ap.add_argument("--windows", type=int, default=3, help="trace windows (episodes) per setting")
    ap.add_argument("--requests", type=int, default=48, help="requests per window")
    ap.add_argument("--rate-scale", type=float, default=6.0)
    ap.add_argument("--token-scale", type=float, default=0.1)
    ap.add_argument("--num-blocks", type=int, default=48, help="KV blocks per engine (block size 16)")
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--router", default="llumnix", help="router for the migration experiment")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="thread", choices=("thread", "ray"))
    ap.add_argument("--slo-ttft", type=float, default=0.5)
    ap.add_argument("--slo-tpot", type=float, default=0.02)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.backend == "ray":
        import ray
        ray.init(num_cpus=max(2, a.engines), include_dashboard=False, log_to_driver=False)
    print("command:", shlex.join([os.path.relpath(sys.argv[0]) if sys.argv[0] else "live_mechanisms.py",
                                  *(argv if argv is not None else sys.argv[1:])]))
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    ws = windows(a.requests, a.windows)
    base = dict(rate_scale=a.rate_scale, token_scale=a.token_scale, num_blocks=a.num_blocks, n_engines=a.engines,
                model=a.model, device=a.device, backend=a.backend, slo={"ttft_s": [a.slo_ttft], "tpot_s": [a.slo_tpot]})
    t0 = time.time()
    if a.only in (None, "migration"):
        res = show(f"migration @ high load: {a.router} routing, {a.engines} engines x {a.num_blocks} blocks, "
             f"{a.windows} windows x {a.requests} requests, rate x{a.rate_scale}",
             compare(ws, {"dispatch only": (a.router, base),
                          "+ migration (llumnix)": (a.router, {**base, "migration": "llumnix"})}))
        d = res["dispatch only"]["p99_ttft"] - res["+ migration (llumnix)"]["p99_ttft"]
        print(f"p99 TTFT dispatch only - with migration: {d:+.4f} s")
    if a.only in (None, "disagg"):
        res = show(f"disaggregation: jsq routing, {a.engines} engines each, SLO {a.slo_ttft} s TTFT / "
                   f"{a.slo_tpot} s TPOT",
                   compare(ws, {"colocated": ("jsq", base),
                                f"{a.engines - 1} prefill + 1 decode": ("jsq", {**base, "disagg": {
                                    "n_prefill": a.engines - 1}})}))
        for name, m in res.items():
            print(f"{name}: goodput per engine {m['goodput_rps'] / a.engines:.3f} req/s")
    print(f"\nwall {time.time() - t0:.1f} s; load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
