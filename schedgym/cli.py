"""The ``schedgym`` command: list what exists, evaluate policies, run the main job.

Bad input (unknown env, dataset, policy, malformed instance file) exits with status 2 and one line on
stderr naming the field and what was expected.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import schedgym
from schedgym import datasets
from schedgym.agents.args import json_dict
from schedgym.evaluation import Results, evaluate
from schedgym.policy import Policy, baselines, make_policy

JOBSHOP = "schedgym/JobShop-v0"
TRAIN_ALGOS = ("selflabel", "sb3", "rllib", "dagger")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        args.extra = extra  # the chosen algorithm's own options, parsed in cmd_train
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"schedgym {args.command}: error: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="schedgym", description="A research gym for learned schedulers.")
    p.add_argument("--version", action="version", version=f"schedgym {schedgym.__version__}")
    sub = p.add_subparsers(dest="command")

    ls = sub.add_parser("list", help="environment ids, datasets (with split sizes) and baselines per env")
    ls.set_defaults(func=cmd_list)

    ev = sub.add_parser("eval", help="evaluate policies on a dataset or on instance files")
    ev.add_argument("--env", required=True, help="environment id, e.g. schedgym/JobShop-v0")
    ev.add_argument("--policy", required=True, action="append",
                    help="baseline name, repeatable or comma-separated; options as NAME:key=value,key=value "
                         "(e.g. cpsat:time_limit=5); or a trained agent: a .pt/.zip/.onnx file or an RLlib "
                         "checkpoint directory")
    src = ev.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="dataset name, optionally NAME:SPLIT (default split: test)")
    src.add_argument("--instances", nargs="+", metavar="PATH", help="instance files or directories")
    ev.add_argument("--seeds", type=int, default=1, help="number of seeds per instance (0..N-1), default 1")
    ev.add_argument("--env-kwargs", type=json_dict, default={}, metavar="JSON",
                    help='keyword arguments of gym.make for every episode, e.g. \'{"rate_scale": 0.5}\'')
    ev.add_argument("--out", help="results file (.json or .csv) with objectives and full schedules")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train", add_help=False,  # --help goes to the algorithm's own parser
                        help="train a GNN agent (selflabel | sb3 | rllib | dagger); "
                             "`schedgym train --algo ALGO --help` lists the algorithm's options")
    tr.add_argument("--algo", choices=TRAIN_ALGOS, default="selflabel",
                    help="selflabel (sample, imitate the best), sb3 (MaskablePPO), rllib (PPO, Ray Tune) or dagger "
                         "(imitate a teacher in the student's own states)")
    tr.set_defaults(func=cmd_train)

    run = sub.add_parser("run", help="the main job: train a small GNN agent, then evaluate it and every "
                                     "JobShop baseline on a Taillard size group: a comparison table, a "
                                     "learning curve, TensorBoard logs and Gantt charts")
    run.add_argument("--group", default="15x15", help="Taillard size group (default 15x15 = ta01-ta10)")
    run.add_argument("--cpsat-time-limit", type=float, default=3.0, help="CP-SAT seconds per instance (default 3)")
    run.add_argument("--out", default="schedgym-results", help="output directory (default ./schedgym-results)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--env", default=JOBSHOP, help="schedgym/JobShop-v0 (default) or schedgym/DAGDispatch-v0")
    run.add_argument("--dataset", help="DAGDispatch-v0: dataset NAME[:SPLIT] (default dag/wfinstances:test)")
    run.add_argument("--noise", type=float, default=0.0, help="DAGDispatch-v0: runtime noise CV (default 0)")
    run.add_argument("--train-seconds", type=float, default=150.0,
                     help="wall-clock training budget of the agent (default 150; longer runs learn more)")
    run.add_argument("--train-dataset", default="jobshop/random-10x10",
                     help="dataset the agent trains on (default jobshop/random-10x10)")
    run.add_argument("--no-train", action="store_true", help="baselines only (no agent)")
    run.add_argument("--agent", metavar="PATH", help="evaluate this trained agent instead of training one")
    run.set_defaults(func=cmd_run)

    cal = sub.add_parser("calibrate", help="live backend: sweep batch shapes on a real engine and write the "
                                           "calibration table the simulator's cost model reads")
    cal.add_argument("--model", default="tiny", help="hwbackend model preset: tiny (default), small, 1b")
    cal.add_argument("--out", required=True, help="output table (.json, schema schedgym.calibration/v1)")
    cal.add_argument("--prefill", default="0,1,8,32,64,128,256,512", help="prefill-token grid (with 0)")
    cal.add_argument("--decode", default="0,1,2,4,8,16,32,64", help="decode-batch grid (comma-separated, with 0)")
    cal.add_argument("--context", default="16,256", help="KV context per decoding sequence")
    cal.add_argument("--block-size", type=int, default=16, help="KV block size (default 16)")
    cal.add_argument("--repeats", type=int, default=5, help="timed runs per shape (median kept), default 5")
    cal.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    cal.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    cal.add_argument("--from-live", action="store_true",
                     help="fit the table to the iterations of a live run of a trace segment (--trace/--start/"
                          "--requests/--rate-scale/--token-scale/--engines/--backend, as the live env runs it) "
                          "instead of sweeping the grid on an idle engine; also records its dispatch latency")
    _live_segment_args(cal, start=200, note="--from-live: ")
    cal.set_defaults(func=cmd_calibrate)

    fid = sub.add_parser("fidelity", help="live backend: replay a trace segment on the live cluster and on the "
                                          "calibrated simulator; relative error of TTFT/TPOT/E2E p50/p90/p99")
    fid.add_argument("--calibration", help="calibration table; default: calibrate first (written to --table-out)")
    fid.add_argument("--table-out", default="calibration.json", help="where a fresh calibration is written")
    _live_segment_args(fid, start=0, note="")
    fid.add_argument("--model", default="tiny", help="hwbackend model preset (default tiny)")
    fid.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    fid.add_argument("--drift-probe", action="store_true",
                     help="time the host on a separate live replay of the segment's first 16 requests just before "
                          "and just after the run and scale the table by their geometric mean in the simulator (the "
                          "scaled copy is written next to the table)")
    fid.add_argument("--dispatch-latency-ms", type=float, default=None,
                     help="router dispatch latency added to the simulated TTFT/E2E (default: probe it first on a "
                          "synthetic live episode; 0 compares the bare simulator)")
    fid.add_argument("--out", help="write the full report as JSON")
    fid.set_defaults(func=cmd_fidelity)
    _serve_parsers(sub)
    return p


def _live_segment_args(p: argparse.ArgumentParser, start: int, note: str) -> None:
    """The trace segment and live cluster of a live run (``calibrate --from-live`` and ``fidelity`` share them,
    defaults included: a table and the run it is judged on should see the same cluster)."""
    p.add_argument("--trace", default="azure-conv-2023", help=f"{note}shipped trace name (azure-conv-2023)")
    p.add_argument("--start", type=int, default=start, help=f"{note}first request of the segment ({start})")
    p.add_argument("--requests", type=int, default=64, help=f"{note}segment length (64)")
    p.add_argument("--rate-scale", type=float, default=4.0, help=f"{note}arrivals replayed this many times faster")
    p.add_argument("--token-scale", type=float, default=0.05, help=f"{note}prompt/output lengths multiplied by this")
    p.add_argument("--engines", type=int, default=2, help=f"{note}number of engines (2)")
    p.add_argument("--backend", default="thread", help=f"{note}thread (default) or ray")
    p.add_argument("--num-blocks", type=int, default=256, help=f"{note}KV blocks per engine (256)")
    p.add_argument("--context-limit", type=int, default=512, help=f"{note}max prompt + output tokens (512)")
    p.add_argument("--chunked-prefill", action="store_true", help=f"{note}engines use chunked prefill")


def _serve_parsers(sub: Any) -> None:
    """``serve`` (Ray Serve app routed by a policy) and ``loadtest`` (trace replay against an endpoint)."""
    sv = sub.add_parser("serve", help="live backend: N engine replicas behind an OpenAI-compatible endpoint "
                                      "(/v1/completions) on Ray Serve, each request routed by a policy")
    sv.add_argument("--policy", default="jsq", help="LLMServing-v0 baseline name or an exported .onnx policy")
    sv.add_argument("--fallback", default="jsq", help="baseline used when stats are stale or the policy fails")
    sv.add_argument("--replicas", type=int, default=2, help="engine replicas (default 2)")
    sv.add_argument("--model", default="tiny", help="hwbackend model preset: tiny (default), small, 1b")
    sv.add_argument("--num-blocks", type=int, default=256, help="KV blocks per replica (default 256)")
    sv.add_argument("--context-limit", type=int, default=512, help="max prompt + output tokens (default 512)")
    sv.add_argument("--chunked-prefill", action="store_true", help="engines use chunked prefill")
    sv.add_argument("--device", default="cpu", help="cpu (default) or cuda (one GPU per replica)")
    sv.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    sv.add_argument("--cpus-per-replica", type=float, default=0.5, help="Ray CPUs per replica (default 0.5)")
    sv.add_argument("--stats-period", type=float, default=0.1, help="replica stats period, s (default 0.1)")
    sv.add_argument("--stale-after", type=float, default=1.0, help="stats older than this (s) -> fallback")
    sv.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    sv.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    sv.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    sv.set_defaults(func=cmd_serve)

    lt = sub.add_parser("loadtest", help="replay a shipped trace against an OpenAI-compatible endpoint on "
                                         "loopback; TTFT/TPOT/E2E percentiles and errors")
    lt.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000 (loopback only)")
    lt.add_argument("--trace", default="azure-conv-2023", help="shipped trace name (default azure-conv-2023)")
    lt.add_argument("--rate", type=float, help="mean arrival rate, req/s (default: the trace's own timing)")
    lt.add_argument("--duration", type=float, default=60.0, help="stop sending after this many seconds (60)")
    lt.add_argument("--requests", type=int, default=100, help="at most this many requests (default 100)")
    lt.add_argument("--start", type=int, default=0, help="first trace request (default 0)")
    lt.add_argument("--token-scale", type=float, default=0.05, help="prompt/output lengths times this (0.05)")
    lt.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s (default 120)")
    lt.add_argument("--model", help="model field to send (default: the first of /v1/models)")
    lt.add_argument("--out", help="write the report as JSON")
    lt.set_defaults(func=cmd_loadtest)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import ray
    from ray import serve

    from schedgym.hwbackend.serve.app import check_policy, start
    from schedgym.hwbackend.serve.state import ReplicaSpec

    check_policy(args.policy, args.fallback)
    if args.replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {args.replicas}")
    spec = ReplicaSpec(model=args.model, engine={"chunked_prefill": bool(args.chunked_prefill)},
                       num_blocks=args.num_blocks, context_limit=args.context_limit, device=args.device)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        url = start(spec, args.replicas, args.policy, host=args.host, port=args.port, fallback=args.fallback,
                    stale_after_s=args.stale_after, stats_period_s=args.stats_period,
                    cpus_per_replica=args.cpus_per_replica)
        print(f"serving {args.replicas} x {args.model} on {url}/v1/completions, routed by {args.policy!r} "
              f"(fallback {args.fallback!r}); routing counts at {url}/v1/router", flush=True)
        t_end = time.time() + args.duration if args.duration else float("inf")
        while time.time() < t_end:
            time.sleep(min(1.0, max(t_end - time.time(), 0.0)))
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    import json

    from schedgym.hwbackend.serve.loadtest import check_loopback, format_report, run_load, trace_workload

    url = check_loopback(args.url)
    w = trace_workload(args.trace, args.requests, rate=args.rate, duration_s=args.duration, start=args.start,
                       token_scale=args.token_scale)
    print(f"replaying {w.n_requests} requests of {args.trace} over {w.arrival[-1]:.1f} s against {url}", flush=True)
    rep = run_load(url, w, model=args.model, timeout_s=args.timeout).report()
    print(format_report(rep))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1, default=float) + "\n")
    return 0 if rep["n_errors"] == 0 else 1


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from schedgym.envs.serving.live_run import CATALOG_MODELS
    from schedgym.hwbackend.profiler import calibrate, write_table
    if args.model not in CATALOG_MODELS:
        raise ValueError(f"--model {args.model!r}: expected one of {sorted(CATALOG_MODELS)}")
    gpu = "CPU" if args.device == "cpu" else "H100-80GB"
    if args.from_live:
        from schedgym.hwbackend.fidelity import segment
        from schedgym.hwbackend.profiler import calibrate_live
        _init_ray(args)
        w = segment(args.trace, args.start, args.requests, args.rate_scale, args.token_scale)
        doc = calibrate_live(w, model=args.model, n_engines=args.engines,
                             engine={"block_size": args.block_size, "chunked_prefill": bool(args.chunked_prefill)},
                             num_blocks=args.num_blocks, context_limit=args.context_limit, device=args.device,
                             backend=args.backend, threads=args.threads, prefill=_ints(args.prefill),
                             decode=_ints(args.decode), context=_ints(args.context), gpu=gpu,
                             catalog_model=CATALOG_MODELS[args.model])
        print(f"{doc['source']}: fit {doc['coefficients']}, median |relative residual| "
              f"{doc['fit_relative_error_p50']:.3f}, dispatch latency {doc['dispatch_latency_s'] * 1e3:.3f} ms, "
              "interference (slowdown with 0, 1, ... other engines computing) "
              + ", ".join(f"{k} " + "/".join(f"x{v:.2f}" for v in vs) for k, vs in doc["interference"].items()))
        for note in doc["interference_notes"]:
            print(f"note: {note}")
    else:
        doc = calibrate(args.model, engine={"block_size": args.block_size}, prefill=_ints(args.prefill),
                        decode=_ints(args.decode), context=_ints(args.context), repeats=args.repeats,
                        device=args.device, threads=args.threads, catalog_model=CATALOG_MODELS[args.model],
                        gpu=gpu, progress=True)
    path = write_table(doc, args.out)
    print(f"wrote {len(doc['rows'])} rows ({doc['device']}) to {path}")
    return 0


def _init_ray(args: argparse.Namespace) -> None:
    """Start a local Ray with one CPU per engine when the live engines are Ray actors."""
    if args.backend != "ray":
        return
    import os

    import ray
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=args.engines, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})


def cmd_fidelity(args: argparse.Namespace) -> int:
    import json

    from schedgym.hwbackend.fidelity import fidelity, format_report, segment
    table = args.calibration
    engine = {"chunked_prefill": bool(args.chunked_prefill)}
    if table is None:
        from schedgym.envs.serving.live_run import CATALOG_MODELS
        from schedgym.hwbackend.profiler import calibrate, write_table
        doc = calibrate(args.model, device=args.device, catalog_model=CATALOG_MODELS[args.model],
                        gpu="CPU" if args.device == "cpu" else "H100-80GB")
        table = str(write_table(doc, args.table_out))
        print(f"calibrated: {len(doc['rows'])} shapes -> {table}")
    w = segment(args.trace, args.start, args.requests, args.rate_scale, args.token_scale)
    _init_ray(args)
    rep = fidelity(w, table, n_engines=args.engines, model=args.model, engine=engine, num_blocks=args.num_blocks,
                   context_limit=args.context_limit, device=args.device, backend=args.backend,
                   dispatch_latency_s=None if args.dispatch_latency_ms is None else args.dispatch_latency_ms / 1e3,
                   drift_dir=str(Path(table).parent) if args.drift_probe else None)
    print(format_report(rep))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1, default=lambda o: o.tolist()) + "\n")  # numpy
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("Environments:")
    for env_id in sorted(schedgym.ENV_IDS):
        cls = gym.registry[env_id].entry_point
        print(f"  {env_id:<28} {cls}")
    print("\nDatasets (split: size; inf = unbounded generator stream):")
    for name, _env_id, splits, desc in datasets.catalogue():
        sizes = ", ".join(f"{s}: {'inf' if n is None else n}" for s, n in splits.items())
        sizes = sizes or "a family of datasets; splits in the description"
        print(f"  {name:<26} [{sizes}]  {desc}")
    print("\nBaselines:")
    for env_id in sorted(schedgym.ENV_IDS):
        print(f"  {env_id:<28} {', '.join(baselines(env_id)) or '(none)'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    env_id = args.env.split(":", 1)[-1]
    if env_id not in gym.registry:
        raise ValueError(f"--env: unknown environment {args.env!r}; expected one of {sorted(schedgym.ENV_IDS)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    pols = _parse_policies(env_id, args.policy)
    kwargs: dict[str, Any] = {"seeds": args.seeds, "out": args.out, "progress": not args.no_progress,
                              "env_kwargs": args.env_kwargs}
    if args.dataset:
        res = evaluate(env_id, pols, args.dataset, **kwargs)
    else:
        res = evaluate(env_id, pols, instances=datasets.load_files(env_id, args.instances), **kwargs)
    print(res.table())
    if args.out:
        print(f"results: {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: train an agent (unless --no-train), then it and every JobShop baseline on a Taillard group."""
    if args.env.split(":", 1)[-1] == "schedgym/DAGDispatch-v0":
        from schedgym.envs.dag.mainjob import DEFAULT_DATASET, run_main_job

        return run_main_job(args.dataset or DEFAULT_DATASET, args.out, not args.no_progress, args.noise)
    if args.env.split(":", 1)[-1] != JOBSHOP:
        raise ValueError(f"--env: run knows {JOBSHOP} and schedgym/DAGDispatch-v0, got {args.env!r}")
    from schedgym.envs.jobshop import viewer
    from schedgym.envs.jobshop.datasets import TAILLARD_GROUPS
    from schedgym.plotting import save_gantt

    if args.group not in TAILLARD_GROUPS:
        raise ValueError(f"--group: unknown Taillard group {args.group!r}; expected one of {list(TAILLARD_GROUPS)}")
    if args.cpsat_time_limit <= 0:
        raise ValueError(f"--cpsat-time-limit must be > 0 seconds, got {args.cpsat_time_limit}")
    if args.train_seconds <= 0:
        raise ValueError(f"--train-seconds must be > 0, got {args.train_seconds}")
    out = Path(args.out)
    dataset = f"jobshop/taillard-{args.group}"
    print(f"$ schedgym {shlex.join(sys.argv[1:] if sys.argv[1:2] == ['run'] else ['run'])}")
    agent = None if args.no_train else _run_agent(args, out)
    pols: dict[str, Policy] = {n: make_policy(JOBSHOP, n) for n in baselines(JOBSHOP) if n != "cpsat"}
    pols["cpsat"] = make_policy(JOBSHOP, "cpsat", time_limit=args.cpsat_time_limit)
    if agent is not None:
        pols[agent.name] = agent
    what = f"the agent and {len(pols) - 1}" if agent is not None else f"{len(pols)}"
    print(f"Evaluating {what} baselines on {dataset} (gap to the best-known upper bound; "
          f"CP-SAT limited to {args.cpsat_time_limit:g} s per instance)")
    t0 = time.perf_counter()
    res = evaluate(JOBSHOP, pols, dataset, seeds=1, progress=not args.no_progress)
    print()
    print(res.table())
    best = min(res.rows, key=lambda r: (r["gap_pct"], r["wall_s"]))
    ds = datasets.get(dataset)
    inst = ds.load(best["instance"])
    import numpy as np

    png = save_gantt(viewer.intervals(inst, np.asarray(best["schedule"]["start_times"])),
                     out / f"gantt_{best['instance']}_{best['policy']}.png",
                     title=f"{best['instance']} / {best['policy']}: makespan {best['makespan']} "
                           f"(best known {best['best_known']}, gap {best['gap_pct']:.1f} %)",
                     resource_label="machine")
    _write(res, out)
    print(f"\nbest schedule: {best['instance']} by {best['policy']}, makespan {best['makespan']} "
          f"(gap {best['gap_pct']:.2f} %)")
    written = [out / "results.json", out / "results.csv", png]
    if agent is not None:
        from schedgym.agents.run import agent_figures

        written += agent_figures(res, agent.name, ds, out)
    print(f"wrote {', '.join(map(str, written))}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _run_agent(args: argparse.Namespace, out: Path) -> Policy:
    """The agent of ``schedgym run``: loaded from ``--agent`` or trained for ``--train-seconds``."""
    import torch

    from schedgym.agents.policy import load_policy
    from schedgym.agents.run import train_default_agent

    torch.set_num_threads(1)  # small nets: one thread is 10-20x faster than torch's default here
    if args.agent:
        return load_policy(args.agent, name="gnn")
    return train_default_agent(out / "agent", args.train_dataset, args.train_seconds,
                               progress=not args.no_progress)


def cmd_train(args: argparse.Namespace) -> int:
    """Parse the chosen algorithm's dataclass options from the rest of the command line and train."""
    from schedgym.agents.args import add_dataclass_args, from_namespace
    from schedgym.agents.run import algorithm

    cls, train = algorithm(args.algo)
    p = argparse.ArgumentParser(prog=f"schedgym train --algo {args.algo}")
    add_dataclass_args(p, cls)
    opts = from_namespace(cls, p.parse_args(args.extra))
    if opts.env.split(":", 1)[-1] not in gym.registry:
        raise ValueError(f"--env: unknown environment {opts.env!r}; "
                         f"expected one of {sorted(schedgym.ENV_IDS)}")
    print(f"$ schedgym train --algo {args.algo} {shlex.join(args.extra)}")
    for line in train(opts):
        print(line)
    return 0


def _write(res: Results, out: Path) -> None:
    res.to_json(out / "results.json")
    res.to_csv(out / "results.csv")


def _parse_policies(env_id: str, specs: list[str]) -> dict[str, Policy]:
    """``["spt,mwkr", "cpsat:time_limit=5"]`` -> named policies (option values parsed as numbers)."""
    out: dict[str, Policy] = {}
    for spec in (s for item in specs for s in _split_top(item)):
        if _is_agent_path(spec):
            import torch

            from schedgym.agents.policy import load_policy

            torch.set_num_threads(1)  # small nets: one thread is 10-20x faster than torch's default here
            pol = load_policy(spec)
            if pol.name in out:
                raise ValueError(f"--policy {spec!r}: two policies are named {pol.name!r}")
            out[pol.name] = pol
            continue
        name, _, opts = spec.partition(":")
        kwargs: dict[str, Any] = {}
        for kv in filter(None, opts.split(",")):
            key, eq, val = kv.partition("=")
            if not eq:
                raise ValueError(f"--policy {spec!r}: option {kv!r} must look like key=value")
            kwargs[key] = _number(val)
        try:
            pol = make_policy(env_id, name, **kwargs)
        except TypeError as e:
            raise ValueError(f"--policy {spec!r}: {e}") from None
        out[spec if opts else name] = pol
    return out


def _is_agent_path(spec: str) -> bool:
    """A trained-agent artefact rather than a baseline name: a path, or a file name with a model suffix."""
    return "/" in spec or "\\" in spec or spec.endswith((".pt", ".zip", ".onnx")) or Path(spec).is_dir()


def _split_top(item: str) -> list[str]:
    """Split on commas that separate policies (not the ones between ``key=value`` options)."""
    parts: list[str] = []
    for tok in item.split(","):
        if parts and "=" in tok and ":" in parts[-1]:
            parts[-1] += "," + tok
        elif tok:
            parts.append(tok)
    return parts


def _number(val: str) -> Any:
    for cast in (int, float):
        try:
            return cast(val)
        except ValueError:
            pass
    return val


if __name__ == "__main__":
    sys.exit(main())
