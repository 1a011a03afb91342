"""Workflow deadline attainment on the LIVE engines (HEXGEN-Text2SQL): FCFS routers (round robin, JSQ) with FCFS
queues against the urgency-aware ``deadline_aware`` router with FCFS and earliest-deadline-first queues, each on
``LLMServingLive-v0`` (real engines, stages released when their parents really finished) and, side by side, on
the calibrated simulator (``LLMServing-v0``; with a live-fitted table also with its measured interference and
iteration jitter, ``sim+host``) with the same workload and engine configuration. Every number comes
from an episode the simulator's validator accepted.

The workload is ``workflows.text2sql_workload`` (schema linking -> k SQL candidates -> selection, lengths from
the Azure conv 2023 test part) with token lengths scaled by ``--token-scale`` and deadlines drawn from
``--deadlines`` (seconds, the scale of a small model on a CPU rather than the 5..40 s of 8B models on GPUs).

``--priorities`` measures the other queue order instead: a segment of the Azure conv 2023 test part with 20 %
of requests in class 0 (tighter SLO), JSQ routing with FCFS vs ``queue_policy="priority"`` queues; per-class p99
TTFT and SLO attainment, live and simulated.

Usage: python scripts/live_workflows.py [--seeds 0-2] [--workflows 60] [--rate 30] [--calibration live|offline|cal.json]
       python scripts/live_workflows.py --priorities [--requests 200] [--rate-scale 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

SETTINGS = (("round_robin", "fcfs"), ("jsq", "fcfs"), ("deadline_aware", "fcfs"), ("deadline_aware", "edf"))
PRIORITY_SETTINGS = (("jsq", "fcfs"), ("jsq", "priority"))
PRIORITY_SLO = {"ttft_s": [0.25, 2.0], "tpot_s": [0.05, 0.2]}  # class 0 (20 % of requests), class 1
PRIORITY_KEYS = ("p99_ttft_class0", "p99_ttft_class1", "slo_attainment_class0", "slo_attainment_class1")
LIVE, SIM = "schedgym/LLMServingLive-v0", "schedgym/LLMServing-v0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-2", help="a range 'a-b' or a comma list (one workload per seed)")
    ap.add_argument("--workflows", type=int, default=60, help="workflows per workload (5 stages each)")
    ap.add_argument("--rate", type=float, default=30.0, help="workflow arrivals per second (real time)")
    ap.add_argument("--deadlines", default="0.5,3", help="deadline range lo,hi in seconds after arrival")
    ap.add_argument("--token-scale", type=float, default=0.1)
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--max-num-seqs", type=int, default=4)
    ap.add_argument("--num-blocks", type=int, default=256)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--priorities", action="store_true", help="priority classes instead of workflows")
    ap.add_argument("--requests", type=int, default=200, help="--priorities: requests per segment")
    ap.add_argument("--rate-scale", type=float, default=20.0, help="--priorities: trace replayed this much faster")
    ap.add_argument("--calibration", default="live",
                    help="the simulator's calibration table: a path, 'offline' (`schedgym calibrate`: one engine "
                         "alone) or 'live' (default: fitted to a live replay of another text2sql segment, so it "
                         "includes the engines' shared-process and machine contention; `calibrate --from-live`)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    import schedgym  # noqa: F401
    from schedgym.envs.serving.datasets import part
    from schedgym.envs.serving.live_run import CATALOG_MODELS, scale_tokens
    from schedgym.envs.serving.variability import INTERFERENCE_KEY
    from schedgym.envs.serving.workflows import text2sql_workload
    from schedgym.evaluation import run_episode
    from schedgym.policy import make_policy

    a, _, b = args.seeds.partition("-")
    seeds = list(range(int(a), int(b) + 1)) if b else [int(x) for x in args.seeds.split(",")]
    lo, hi = (float(x) for x in args.deadlines.split(","))
    cal = args.calibration
    context = 512
    if cal in ("live", "offline"):
        from schedgym.hwbackend.profiler import calibrate, calibrate_live, write_table

        path = os.path.join(tempfile.mkdtemp(prefix="schedgym-cal-"), f"{args.model}.json")
        if cal == "offline":
            doc = calibrate(args.model, catalog_model=CATALOG_MODELS[args.model])
        else:  # a segment no comparison uses: the test part's last requests / workflows of seed 10_000
            test = part("azure-conv-2023", "test")
            if args.priorities:
                wc = test.slice(test.n_requests - args.requests, test.n_requests).scaled(args.rate_scale)
            else:
                wc = text2sql_workload(test, np.random.default_rng(10_000), args.workflows, args.rate,
                                       deadline_range=(lo, hi))
            doc = calibrate_live(scale_tokens(wc, args.token_scale), model=args.model, n_engines=args.engines,
                                 engine={"max_num_seqs": args.max_num_seqs}, num_blocks=args.num_blocks,
                                 context_limit=context, catalog_model=CATALOG_MODELS[args.model])
        cal = str(write_table(doc, path))
    load = os.getloadavg()
    live_kw = {"rate_scale": 1.0, "token_scale": args.token_scale, "n_engines": args.engines, "model": args.model,
               "num_blocks": args.num_blocks, "context_limit": context, "calibration": cal, "segment_requests": None}
    spec = {"gpu": "CPU", "model": CATALOG_MODELS[args.model], "max_model_len": context, "calibration": cal}
    with open(cal) as f:  # a live-fitted table carries the host's measured interference and iteration jitter
        measured = INTERFERENCE_KEY in json.load(f)
    sim_kw = {"rate_scale": 1.0, "cluster": [spec] * args.engines, "segment_requests": None}
    # "sim": table times; "sim+host": also the host's measured interference and seeded jitter (live tables only)
    sims = {"sim": {}, "sim+host": {"interference": True, "iteration_noise": True}} if measured else {"sim": {}}
    sides = ("live", *sims)
    res: dict[tuple[str, str, str, str], list[float]] = {}
    loads = [load[0]]  # 1-min load average before and after every live episode (a 2-core machine is shared)
    t0 = time.perf_counter()
    settings = PRIORITY_SETTINGS if args.priorities else SETTINGS
    keys = PRIORITY_KEYS if args.priorities else ("deadline_attainment",)
    if args.priorities:
        from schedgym.envs.serving.generator import sample_classes

        live_kw["slo"] = sim_kw["slo"] = PRIORITY_SLO
    test = part("azure-conv-2023", "test")
    for seed in seeds:
        rng = np.random.default_rng(seed)
        if args.priorities:  # consecutive segments, one per seed, times replayed --rate-scale faster
            w = test.slice(seed * args.requests, (seed + 1) * args.requests).scaled(args.rate_scale)
            w = w.with_priority(sample_classes(rng, w.n_requests, (0.2, 0.8)))
        else:
            w = text2sql_workload(test, rng, args.workflows, args.rate, deadline_range=(lo, hi))
        for pol, qp in settings:
            engine = {"queue_policy": qp, "max_num_seqs": args.max_num_seqs}
            row = run_episode(LIVE, make_policy(LIVE, pol), w, seed, env_kwargs={**live_kw, "engine": engine})
            loads.append(os.getloadavg()[0])
            for k in keys:
                res.setdefault((k, "live", pol, qp), []).append(row[k])
            sw = scale_tokens(w, args.token_scale)  # what the live env replays
            for side, extra in sims.items():
                srow = run_episode(SIM, make_policy(SIM, pol), sw, seed, env_kwargs={
                    **sim_kw, **extra, "engine": {**engine, "num_gpu_blocks": args.num_blocks}})
                for k in keys:
                    res.setdefault((k, side, pol, qp), []).append(srow[k])
    what = (f"--priorities --requests {args.requests} --rate-scale {args.rate_scale:g}" if args.priorities else
            f"--workflows {args.workflows} --rate {args.rate:g} --deadlines {lo:g},{hi:g}")
    print(f"$ python scripts/live_workflows.py --seeds {args.seeds} {what} --token-scale {args.token_scale:g} "
          f"--engines {args.engines} --max-num-seqs {args.max_num_seqs} --num-blocks {args.num_blocks} "
          f"--model {args.model} --calibration {args.calibration}")
    if measured:
        print("sim: the live-fitted table's times (an engine alone); sim+host: also its measured interference "
              "between engines and seeded iteration jitter (interference=True, iteration_noise=True)")
    print(("azure-conv-2023 test segments, 20 % class 0 (SLO TTFT 0.25 s / TPOT 50 ms; class 1: 2 s / 200 ms)"
           if args.priorities else "text2sql workflows (5 stages)")
          + f", {args.engines} live {args.model} engines on CPU threads; 1-min load average "
          f"{min(loads):.2f}..{max(loads):.2f} over the live episodes; {time.perf_counter() - t0:.0f} s")
    for k in keys:
        print(f"\n{k} per seed (validated)\n{'router + queues':<24}{'':>9}"
              + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}")
        for pol, qp in settings:
            for side in sides:
                v = res[(k, side, pol, qp)]
                print(f"{pol + ' + ' + qp:<24}{side:>9}" + "".join(f"{x:>9.3f}" for x in v) + f"{np.mean(v):>9.3f}")
    k = keys[0]
    (bp, bq), (tp, tq) = settings[0], settings[-1]
    print()
    for side in sides:
        gain = np.array(res[(k, side, tp, tq)]) - np.array(res[(k, side, bp, bq)])
        print(f"{side}: {k} {tp} + {tq} - {bp} + {bq} = {np.mean(gain):+.3f} (per seed "
              + ", ".join(f"{g:+.3f}" for g in gain) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
