"""Served router figures: one Azure trace segment through Ray Serve with several routing policies, and the same
segment through the simulator and the live env, side by side (TTFT / TPOT / E2E percentiles, ms).

    python scripts/bench_serve.py --requests 80 --rate 4 --policies round_robin,jsq --calibration cal.json

(``schedgym calibrate --model tiny --out cal.json`` writes the calibration table the simulator needs.)
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from schedgym.hwbackend.serve import compare
from schedgym.hwbackend.serve.loadtest import format_report, trace_workload
from schedgym.hwbackend.serve.state import ReplicaSpec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trace", default="azure-conv-2023")
    p.add_argument("--requests", type=int, default=80)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--rate", type=float, default=4.0, help="mean arrival rate, req/s")
    p.add_argument("--token-scale", type=float, default=0.05)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--model", default="tiny")
    p.add_argument("--policies", default="round_robin,jsq", help="comma-separated; .onnx paths allowed")
    p.add_argument("--calibration", help="calibration table for the simulator column (omit: no sim column)")
    p.add_argument("--no-live-env", action="store_true", help="skip the live-env column")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--cpus-per-replica", type=float, default=0.5)
    a = p.parse_args()
    print(f"$ python scripts/bench_serve.py {shlex.join(sys.argv[1:])}  (load average {os.getloadavg()[0]:.2f})")
    spec = ReplicaSpec(model=a.model)
    w = trace_workload(a.trace, a.requests, rate=a.rate, start=a.start, token_scale=a.token_scale,
                       duration_s=3600, max_request_tokens=spec.request_limit())
    print(f"workload {w.name}: {w.n_requests} requests over {w.arrival[-1]:.1f} s, prompt mean "
          f"{w.prompt_tokens.mean():.1f} tokens, output mean {w.output_tokens.mean():.1f} tokens")
    policies = [x for x in a.policies.split(",") if x]
    cols: dict[str, dict] = {}
    import ray

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        reps = compare.served(w, spec, a.replicas, policies, port=a.port, cpus_per_replica=a.cpus_per_replica)
    finally:
        ray.shutdown()
    for pol, rep in reps.items():
        print(f"\n[served, {pol}]\n{format_report(rep)}\nrouter decisions: {rep['router']}")
    if a.calibration:
        for pol in dict.fromkeys(policies):  # the simulator is deterministic: once per policy
            if not pol.endswith(".onnx"):
                cols[f"sim {pol}"] = compare.simulated(w, spec, a.replicas, pol, a.calibration)
    if not a.no_live_env:
        for pol in dict.fromkeys(policies):
            if not pol.endswith(".onnx"):
                cols[f"live-env {pol}"] = compare.live_env(w, spec, a.replicas, pol)
    for pol, rep in reps.items():
        cols[f"served {pol}"] = rep
    print(f"\nside by side ({a.replicas} replicas of {a.model}, CPU; load average {os.getloadavg()[0]:.2f})")
    print(compare.format_table(cols))


if __name__ == "__main__":
    main()
