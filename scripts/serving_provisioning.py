"""Mélange-style provisioning on LLMServing: the cheapest mix of GPU types that meets an SLO-attainment target
on a mixed-length trace, against the cheapest allocation of each single type.

Usage: python scripts/serving_provisioning.py [--preset melange]
"""

from __future__ import annotations

import argparse
import sys
import time

from schedgym.envs.serving.provisioning import PROVISIONING_PRESETS, solve


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="melange", choices=sorted(PROVISIONING_PRESETS))
    args = ap.parse_args()
    t0 = time.perf_counter()
    p = PROVISIONING_PRESETS[args.preset]()
    res = solve(p)
    print(f"$ python scripts/serving_provisioning.py --preset {args.preset}")
    print(f"{p.workload.name}: {p.model}, SLO TTFT {p.slo.ttft_s[0]} s / TPOT {p.slo.tpot_s[0]} s, "
          f"target attainment {p.target}, at most {p.max_per_type} of each of {list(p.gpus)}")
    print(res.table(p.gpus))
    singles = [e["cost_per_hour"] for e in res.best_single.values() if e]
    ok = res.best is not None and bool(singles) and res.best["cost_per_hour"] < min(singles)
    print(f"\n[{'PASS' if ok else 'FAIL'}] a mixed allocation is cheaper than the best single-type allocation at the "
          f"same attainment target ({len(res.evaluated)} allocations simulated and validated, "
          f"{time.perf_counter() - t0:.0f} s)")
    # The same answer as actions of schedgym/Provisioning-v0: its objective, recomputed by the validator.
    if res.best is not None:
        import gymnasium as gym

        import schedgym  # noqa: F401
        from schedgym.envs.provisioning.types import GPU_SLOTS

        env = gym.make("schedgym/Provisioning-v0", instance=p)
        env.reset(seed=0)
        for g, n in zip(p.gpus, res.best["counts"], strict=True):
            for _ in range(n):
                env.step(GPU_SLOTS.index(g))
        _, reward, _, _, info = env.step(len(GPU_SLOTS))
        v = env.unwrapped.validate()
        print(f"Provisioning-v0 with that allocation: penalized_cost_per_hour {info['penalized_cost_per_hour']:.2f} "
              f"(validator {v['penalized_cost_per_hour']:.2f}), SLO attainment {v['slo_attainment']:.3f}, "
              f"reward {reward:.4f}")
        ok = ok and v["penalized_cost_per_hour"] == info["penalized_cost_per_hour"] == res.best["cost_per_hour"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
