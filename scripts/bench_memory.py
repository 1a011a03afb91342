"""Benchmark: memory baselines on MiniMalloc's 11 challenging instances and on the real programs.

Every number comes from a validated episode of the shared harness (``run_episode``: the env's objective is
recomputed by the independent validator). Prints the command, the machine, and:

1. MiniMalloc (MemoryOffsets-v0): the capacity multiple each greedy rule needs (its peak / capacity: the
   rules never look at the capacity) next to the published figure; then whether the canonical DFS
   (``--dfs-time`` CPU seconds), CP-SAT (``--cpsat-time`` wall seconds) and the portfolio (DFS, then CP-SAT
   on what the DFS missed) fit at 1.0x, and in how many seconds (wall; DFS also CPU).
2. Real programs (MemoryMapping-v0, default env): speed-up of each baseline over all-slow, with the share of
   the all-fast bound's saving it achieves; CP-SAT's own plan is validated and shown next to the env's
   replay of it.
3. Memory-map figures (address x time) under ``--out``.

    python scripts/bench_memory.py [--dfs-time 60] [--cpsat-time 60] [--instances A,B,...]
                                   [--skip-programs] [--out schedgym-results/memory]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

import schedgym  # noqa: F401  (registers the ids, datasets and baselines)
from schedgym.envs.memory import viewer
from schedgym.envs.memory.datasets import PROGRAMS
from schedgym.envs.memory.io import MINIMALLOC_NAMES, load_minimalloc, load_shipped_program
from schedgym.envs.memory.types import TierMapping
from schedgym.envs.memory.validator import op_times, validate_mapping
from schedgym.evaluation import run_episode
from schedgym.policy import make_policy

OFFSETS = "schedgym/MemoryOffsets-v0"
MAPPING = "schedgym/MemoryMapping-v0"
GREEDY = ("tflite_bestfit", "tflm_firstfit", "firstfit_start")
MAPPERS = ("xla_msa", "tflite_bestfit", "tflm_firstfit", "firstfit_start", "cpsat")
# schedgym/data/memory/minimalloc/README.md: heights / capacity of bestfit/size, firstfit/size,
# firstfit/start, and MiniMalloc's C++ time (s).
PUBLISHED = {
    "A": (1.311, 1.290, 1.707, 15.7), "B": (1.347, 1.347, 1.604, 9.6), "C": (1.352, 1.352, 1.671, 1.8),
    "D": (1.255, 1.231, 1.331, 8.5), "E": (1.401, 1.369, 1.836, 10.2), "F": (1.375, 1.375, 1.200, 22.2),
    "G": (1.332, 1.332, 1.170, 5.5), "H": (1.355, 1.355, 1.258, 6.3), "I": (1.410, 1.410, 1.822, 13.2),
    "J": (1.271, 1.243, 1.737, 4.3), "K": (1.327, 1.290, 2.273, 1.9),
}  # fmt: skip


def episode(env_id: str, policy: str, instance: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
    """A validated result row and the policy (its ``info``)."""
    pol = make_policy(env_id, policy, **kw)
    return run_episode(env_id, pol, instance, 0, policy), pol


def minimalloc_table(names: list[str], dfs_time: float, cpsat_time: float, out: Path) -> None:
    print("\n## MiniMalloc challenging instances (capacity 2^20): capacity multiple needed, fit at 1.0x")
    print(
        f"greedy: peak / capacity (published in brackets). DFS: baselines/minimalloc_dfs.py, {dfs_time:g} "
        "CPU s; "
        f"CP-SAT: baselines/cpsat_memory.py, {cpsat_time:g} s, 2 workers;\nportfolio: DFS, then CP-SAT where "
        "the DFS found nothing. 'fits' = packed within 1.0x capacity; seconds are wall time of the episode."
    )
    print(
        f"{'inst':<4} {'bufs':>4} {'live':>5} | "
        + " ".join(f"{g:>16}" for g in GREEDY)
        + f" | {'DFS':>20} | {'CP-SAT':>13} | {'portfolio':>13} | MiniMalloc C++"
    )
    count = {"dfs": 0, "cpsat": 0, "portfolio": 0}
    wall = {"dfs": 0.0, "cpsat": 0.0, "portfolio": 0.0}
    figure_done = False
    for name in names:
        inst = load_minimalloc(name)
        pub = PUBLISHED[name]
        greedy = []
        for k, g in enumerate(GREEDY):
            row, _ = episode(OFFSETS, g, inst)
            greedy.append(f"{row['capacity_ratio']:.3f} ({pub[k]:.3f})")
        d_row, d_pol = episode(OFFSETS, "minimalloc_dfs", inst, time_limit=dfs_time)
        c_row, _ = episode(OFFSETS, "cpsat", inst, time_limit=cpsat_time)
        d_ok, c_ok = d_pol.info["search_status"] == "found", bool(c_row["fits"])
        d_t, c_t = d_row["wall_s"], c_row["wall_s"]
        p_ok, p_t = d_ok or c_ok, d_t + (0.0 if d_ok else c_t)
        for key, ok, t in (("dfs", d_ok, d_t), ("cpsat", c_ok, c_t), ("portfolio", p_ok, p_t)):
            count[key] += ok
            wall[key] += t
        d_cell = f"{_fit(d_ok, d_row):>6} {d_t:5.1f}s ({d_pol.info['search_cpu_s']:5.1f} cpu)"
        c_cell = f"{_fit(c_ok, c_row):>6} {c_t:5.1f}s"
        p_cell = f"{'fits' if p_ok else 'no':>6} {p_t:5.1f}s"
        print(
            f"{name:<4} {inst.n_buffers:>4} {inst.peak_live() / inst.capacity:5.3f} | "
            + " ".join(greedy)
            + f" | {d_cell} | {c_cell} | {p_cell} | {pub[3]:g} s",
            flush=True,
        )
        if p_ok and not figure_done:
            off = np.array((d_row if d_ok else c_row)["schedule"]["offsets"])
            fig = viewer.offsets_figure(inst, off, f"MiniMalloc {name}: packed within 1.0x capacity")
            print(f"   memory map: {viewer.save_figure(fig, out / f'minimalloc_{name}.png')}")
            figure_done = True
    n = len(names)
    print(
        f"fit at 1.0x: greedy rules 0/{n}; DFS {count['dfs']}/{n} ({wall['dfs']:.0f} s); CP-SAT "
        f"{count['cpsat']}/{n} ({wall['cpsat']:.0f} s); "
        f"portfolio {count['portfolio']}/{n} ({wall['portfolio']:.0f} s)"
    )


def _fit(ok: bool, row: dict[str, Any]) -> str:
    return "fits" if ok else f"{row['capacity_ratio']:.3f}"


def programs_table(cpsat_time: float, out: Path) -> None:
    print("\n## Real programs (MemoryMapping-v0, default env: XLA priority order, best fit)")
    print(
        "speed-up over all-slow (share of the all-fast upper bound's saving); all-fast = every buffer in "
        f"fast memory,\ncapacity ignored; cpsat: {cpsat_time:g} s, replayed by the env; cpsat plan: the "
        "solver's own mapping"
    )
    print(
        f"{'program':<13} {'ops':>4} {'bufs':>4} {'fast KiB':>8} | {'all-fast':>8} | "
        + " ".join(f"{p:>16}" for p in MAPPERS)
        + f" | {'cpsat plan':>16}"
    )
    best: tuple[float, str, str, dict[str, Any]] | None = None
    for name in PROGRAMS:
        prog = load_shipped_program(name)
        cells = []
        for p in MAPPERS:
            row, pol = episode(MAPPING, p, prog, **({"time_limit": cpsat_time} if p == "cpsat" else {}))
            cells.append(_speedup(row))
            if best is None or row["speedup"] > best[0]:
                best = (row["speedup"], name, p, row)
        sel, off = pol.planned_mapping  # the last policy is cpsat: its own mapping, validated on its own
        plan = validate_mapping(prog, TierMapping(name, sel.astype(np.int8), np.where(sel, off, -1)))
        bound = row["all_slow_time"] / row["all_fast_time"]
        print(
            f"{name:<13} {prog.n_ops:>4} {prog.n_buffers:>4} {prog.spec.fast_capacity / 1024:>8.0f} | "
            f"{bound:>7.2f}x | " + " ".join(cells) + f" | {_speedup(plan)}",
            flush=True,
        )
    assert best is not None
    _, name, pol_name, row = best
    prog = load_shipped_program(name)
    tier = np.array(row["schedule"]["tier"])
    fast = tier == 1
    title = (
        f"{name} / {pol_name}: {row['speedup']:.2f}x over all-slow ({int(fast.sum())} buffers in fast memory)"
    )
    fig = viewer.mapping_figure(
        prog,
        tier,
        np.array(row["schedule"]["offset"]),
        op_times(prog, fast),
        op_times(prog, np.zeros(prog.n_buffers, bool)),
        title,
    )
    print(f"memory map: {viewer.save_figure(fig, out / f'mapping_{name}_{pol_name}.png')}")


def _speedup(row: dict[str, Any]) -> str:
    share = (row["all_slow_time"] - row["exec_time"]) / (row["all_slow_time"] - row["all_fast_time"])
    return f"{row['speedup']:>6.3f}x ({100 * share:>4.0f}%)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dfs-time", type=float, default=60.0, help="canonical DFS CPU seconds per instance (60)"
    )
    ap.add_argument("--cpsat-time", type=float, default=60.0, help="CP-SAT seconds per instance (60)")
    ap.add_argument(
        "--instances", default=",".join(MINIMALLOC_NAMES), help="MiniMalloc instances (default A..K)"
    )
    ap.add_argument("--skip-programs", action="store_true", help="only the MiniMalloc table")
    ap.add_argument("--out", type=Path, default=Path("schedgym-results/memory"), help="figure directory")
    args = ap.parse_args(argv)
    names = [n for n in args.instances.split(",") if n]
    bad = [n for n in names if n not in MINIMALLOC_NAMES]
    if bad or not names:
        ap.error(f"--instances must name some of {list(MINIMALLOC_NAMES)}, got {args.instances!r}")
    if args.dfs_time <= 0 or args.cpsat_time <= 0:
        ap.error("--dfs-time and --cpsat-time must be > 0")
    print("$ python " + shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f} at start), "
        f"Python {platform.python_version()}"
    )
    minimalloc_table(names, args.dfs_time, args.cpsat_time, args.out)
    if not args.skip_programs:
        programs_table(args.cpsat_time, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
