"""Fidelity with repeats: calibrate, replay a trace segment live and on the calibrated simulator, N times; print
each repeat's relative errors, their spread, the live run-to-run spread (the noise floor no simulator can beat:
the same segment replayed live twice) and the load average around every run.

    python scripts/bench_fidelity.py --repeats 4 --calibration live --out fidelity-runs/

``--calibration live`` fits the table to a live run of a different segment (``--calib-start``) right before
each repeat (``profiler.calibrate_live``, which also measures the dispatch latency); ``grid`` sweeps the grid
on an idle engine (``profiler.calibrate``; dispatch latency probed on a synthetic episode); a path reuses one
table for every repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from schedgym.cli import _live_segment_args
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calibration", default="live", help="live (default), grid, or a table path")
    _live_segment_args(p, start=0, note="compared segment and cluster: ")
    p.add_argument("--calib-start", type=int, default=200, help="calibration segment (--calibration live): 200")
    p.add_argument("--model", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--grid-repeats", type=int, default=7, help="--calibration grid: sweeps per shape (7)")
    p.add_argument("--out", default="fidelity-runs", help="folder for tables and reports")
    p.add_argument("--drift-probe", action="store_true",
                   help="time the host on a separate live replay of the segment's first 16 requests just before and "
                        "just after each compared run and scale the table by their geometric mean in the simulator "
                        "(fidelity.probe_host_speed)")
    a = p.parse_args(argv)

    import torch

    import schedgym  # noqa: F401  (registers the env ids)
    from schedgym.envs.serving.live_run import CATALOG_MODELS
    from schedgym.hwbackend.fidelity import fidelity, format_report, segment
    from schedgym.hwbackend.profiler import calibrate, calibrate_live, write_table
    torch.set_num_threads(1)
    from schedgym.cli import _init_ray
    _init_ray(argparse.Namespace(backend=a.backend, engines=a.engines))  # Ray actors: a local Ray first
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python scripts/bench_fidelity.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    print(f"# {cmd}\n# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} CPUs", flush=True)
    w = segment(a.trace, a.start, a.requests, a.rate_scale, a.token_scale)
    gpu = "CPU" if a.device == "cpu" else "H100-80GB"
    live_kw = dict(n_engines=a.engines, model=a.model, num_blocks=a.num_blocks, context_limit=a.context_limit,
                   device=a.device, backend=a.backend, engine={"chunked_prefill": bool(a.chunked_prefill)})
    reps = []
    for k in range(a.repeats):
        load0 = os.getloadavg()
        if a.calibration == "live":
            wc = segment(a.trace, a.calib_start, a.requests, a.rate_scale, a.token_scale)
            doc = calibrate_live(wc, gpu=gpu, catalog_model=CATALOG_MODELS[a.model], **live_kw)
            table = str(write_table(doc, out / f"table_{k}.json"))
        elif a.calibration == "grid":
            doc = calibrate(a.model, repeats=a.grid_repeats, device=a.device, gpu=gpu,
                            catalog_model=CATALOG_MODELS[a.model])
            table = str(write_table(doc, out / f"table_{k}.json"))
        else:
            table = a.calibration
        load1 = os.getloadavg()
        rep = fidelity(w, table, drift_dir=str(out) if a.drift_probe else None, **live_kw)
        rep["load_avg_calibration"], rep["load_avg_before_live"], rep["load_avg_after"] = load0, load1, \
            os.getloadavg()
        (out / f"report_{k}.json").write_text(json.dumps(rep, indent=1, default=lambda o: o.tolist()) + "\n")
        print(f"\n## repeat {k}: load average (1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at "
              f"calibration, {load1[0]:.2f} before the live run, {rep['load_avg_after'][0]:.2f} after")
        print(format_report(rep), flush=True)
        reps.append(rep)
    print(f"\n## summary over {len(reps)} repeats: relative error (predicted - live) / live, min .. max "
          f"[mean]; live spread = (max - min) / median of the live values (the run-to-run noise floor)")
    share = [r["iterations"]["cpu_share"]["value"] for r in reps]
    print(f"engine threads' CPU time / iteration wall time: {min(share):.2f} .. {max(share):.2f} (below 1 on a "
          "CPU device: waiting for a core)")
    for key, title in (("rows", f"from trace arrivals ({reps[0]['prediction']})"),
                       ("rows_mean_model", "from trace arrivals, deterministic model (table times + median delay)"),
                       ("rows_run_speed", "diagnostic: the prediction at the compared run's own speed"),
                       ("engine_rows", "engine-side")):
        if not reps[0][key]:
            continue
        print(title)
        metrics = [r["metric"] for r in reps[0][key]]
        for j, m in enumerate(metrics):
            err = np.array([r[key][j]["rel_err"] for r in reps]) * 100
            live = np.array([r[key][j]["live"] for r in reps])
            print(f"  {m:9s} err {err.min():7.1f} .. {err.max():7.1f} % [{err.mean():6.1f}]   live spread "
                  f"{(live.max() - live.min()) / np.median(live) * 100:6.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
