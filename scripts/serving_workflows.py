"""Workflow deadline attainment (HEXGEN-Text2SQL) over several seeds: JSQ + FCFS queues against the
urgency-aware ``deadline_aware`` router and earliest-deadline-first queues, each number from a validated episode.

Usage: python scripts/serving_workflows.py [--seeds 0-4] [--rate 3] [--cluster mixed-4] [--max-num-seqs 16]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from schedgym.envs.serving.effects import WORKFLOW_SETTINGS, workflow_effect


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0-4", help="a range 'a-b' or a comma list")
    ap.add_argument("--rate", type=float, default=3.0, help="workflows per second")
    ap.add_argument("--cluster", default="mixed-4")
    ap.add_argument("--max-num-seqs", type=int, default=16)
    args = ap.parse_args()
    a, _, b = args.seeds.partition("-")
    seeds = list(range(int(a), int(b) + 1)) if b else [int(x) for x in args.seeds.split(",")]
    t0 = time.perf_counter()
    res = workflow_effect(seeds, args.rate, args.cluster, args.max_num_seqs)
    print(f"$ python scripts/serving_workflows.py --seeds {args.seeds} --rate {args.rate:g} --cluster {args.cluster} "
          f"--max-num-seqs {args.max_num_seqs}")
    print(f"{'router + queues':<26}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}{'std':>8}")
    for (pol, qp), v in res.items():
        print(f"{pol + ' + ' + qp:<26}" + "".join(f"{x:>9.3f}" for x in v) + f"{np.mean(v):>9.3f}{np.std(v):>8.3f}")
    base, best = np.array(res[WORKFLOW_SETTINGS[0]]), np.array(res[WORKFLOW_SETTINGS[-1]])
    ok = bool((best > base).all())
    print(f"\n[{'PASS' if ok else 'FAIL'}] deadline_aware + edf beats jsq + fcfs on every seed "
          f"(gain {np.mean(best - base):+.3f} +- {np.std(best - base):.3f}; {time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
