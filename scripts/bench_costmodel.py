"""Check the roofline cost model against Vidur's measured GPU operator timings (A100, H100).

Fits each GPU's efficiency constants on a seeded half of the rows and prints the median and p90 relative
error on the other half per GPU x model x operator group (``--all`` for every row). ``--write`` stores the
fitted constants in ``schedgym/data/serving/costmodel_fit.json`` (what the simulator uses); without it the
shipped constants are evaluated.

Usage: python scripts/bench_costmodel.py [--refit] [--write] [--per-op] [--all]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from schedgym.envs.serving import profiling
from schedgym.envs.serving.costmodel import fitted_efficiency

FIT_JSON = Path(__file__).resolve().parents[1] / "schedgym" / "data" / "serving" / "costmodel_fit.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--refit", action="store_true", help="fit the constants on the training half now")
    ap.add_argument("--write", action="store_true", help="refit and write costmodel_fit.json")
    ap.add_argument("--per-op", action="store_true", help="also report each mlp.csv operator")
    ap.add_argument("--all", action="store_true", help="report on all rows instead of the held-out half")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test row split")
    args = ap.parse_args()
    print("$ python scripts/bench_costmodel.py" + "".join(f" --{k.replace('_', '-')}" for k in
                                                           ("refit", "write", "per_op", "all") if getattr(args, k)))
    t0 = time.perf_counter()
    groups = profiling.load_groups()
    if args.refit or args.write:
        a100 = profiling.fit("A100-80GB", groups, seed=args.seed)
        h100 = profiling.fit("H100-80GB", groups, base=a100, seed=args.seed)  # attention constants from A100
        effs = {"A100-80GB": a100, "H100-80GB": h100}
        print(f"fitted on the training half (seed {args.seed}) in {time.perf_counter() - t0:.1f} s")
    else:
        effs = {g: fitted_efficiency(g) for g in ("A100-80GB", "H100-80GB")}
        print("shipped constants (schedgym/data/serving/costmodel_fit.json)")
    if args.write:
        doc = {"_note": "fitted by scripts/bench_costmodel.py --write on the seeded training half of Vidur's "
                        "profiles; H100 has no attention profile and borrows the A100's attention constants",
               "seed": args.seed, "efficiency": {g: e.to_dict() for g, e in effs.items()}}
        FIT_JSON.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {FIT_JSON}")
    rows = profiling.evaluate(groups, effs, seed=args.seed, part="all" if args.all else "test", per_op=args.per_op)
    print(f"\nrelative error of predicted vs measured time ({'all' if args.all else 'held-out'} rows)")
    print(f"{'GPU':<11}{'model':<13}{'group':<26}{'rows':>7}{'median':>9}{'p90':>9}")
    for r in rows:
        print(f"{r['gpu']:<11}{r['model']:<13}{r['group']:<26}{r['rows']:>7}{r['median_rel_err']:>9.1%}"
              f"{r['p90_rel_err']:>9.1%}")
    worst = max(r["median_rel_err"] for r in rows)
    print(f"\nworst median error {worst:.1%} (goal <= 15%)")
    return 0 if worst <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
