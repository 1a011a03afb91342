"""Print the table of published LLM-serving effects reproduced on LLMServing-v0 and write TTFT CDF plots.

Usage: python scripts/serving_effects.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time

from schedgym.envs.serving.effects import serving_effects


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="schedgym-results/serving-effects", help="directory for the CDF plots")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rep = serving_effects(args.out, seed=args.seed)
    print(f"$ python scripts/serving_effects.py --out {args.out} --seed {args.seed}")
    print(rep.table())
    print(f"\nTTFT CDF plots in {args.out}/ ({time.perf_counter() - t0:.0f} s)")
    return 0 if all(rep.checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
