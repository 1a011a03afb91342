"""Memory baselines through the shared harness: greedy allocators replay exactly, the canonical DFS and CP-SAT
are exact on small instances (checked against brute force), XLA's greedy is reproduced decision by
decision."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import schedgym  # noqa: F401
from schedgym.baselines._memory import greedy_offsets
from schedgym.baselines.cpsat_memory import solve_mapping, solve_offsets
from schedgym.baselines.minimalloc_dfs import CanonicalSearch, search_offsets
from schedgym.envs.memory.generator import random_offsets, random_program
from schedgym.envs.memory.io import load_minimalloc, load_shipped_program
from schedgym.envs.memory.sim import CostModel
from schedgym.envs.memory.types import MemoryProgram, MemorySpec, OffsetInstance, TierMapping
from schedgym.envs.memory.validator import execution_time, validate_mapping, validate_offsets
from schedgym.evaluation import evaluate, run_episode
from schedgym.policy import baselines, make_policy

MAPPING = "schedgym/MemoryMapping-v0"
OFFSETS = "schedgym/MemoryOffsets-v0"


def test_baselines_are_registered_for_both_envs():
    assert set(baselines(OFFSETS)) == {
        "tflite_bestfit",
        "tflm_firstfit",
        "firstfit_start",
        "minimalloc_dfs",
        "cpsat",
    }
    assert set(baselines(MAPPING)) == {
        "xla_msa",
        "tflite_bestfit",
        "tflm_firstfit",
        "firstfit_start",
        "cpsat",
    }


@pytest.mark.parametrize("name", ["A", "K"])
def test_greedy_packings_replay_exactly_through_the_env(name):
    inst = load_minimalloc(name)
    for pol in ("tflite_bestfit", "tflm_firstfit", "firstfit_start"):
        policy = make_policy(OFFSETS, pol)
        row = run_episode(OFFSETS, policy, inst, 0, pol)
        planned = policy.plan_offsets(inst)
        assert row["schedule"]["offsets"] == planned.tolist(), pol  # the env reproduced the packing
        assert row["peak"] == policy.info["planned_peak"] and row["fits"] == 0
        assert row["gap_pct"] == pytest.approx(100 * (row["peak"] / inst.best_known - 1))


def test_harness_on_minimalloc_reports_the_published_greedy_heights():
    res = evaluate(OFFSETS, ["tflite_bestfit"], "memory/minimalloc", seeds=1)
    got = {r["instance"]: round(r["capacity_ratio"], 3) for r in res.rows}
    assert got == {
        "A": 1.311,
        "B": 1.347,
        "C": 1.352,
        "D": 1.255,
        "E": 1.401,
        "F": 1.375,
        "G": 1.332,
        "H": 1.355,
        "I": 1.410,
        "J": 1.271,
        "K": 1.327,
    }


# ---------------------------------------------------------------------------------------------- exact search
def brute_force_min_peak(inst: OffsetInstance) -> int:
    """Smallest capacity at which the canonical search finds a packing (tiny instances only)."""
    cap = inst.peak_live()
    while CanonicalSearch(inst.lower, inst.upper, inst.size, cap).solve(10.0)[0] is None:
        cap += 1
    return cap


def test_canonical_search_fits_planted_zero_slack_instances():
    for seed in range(6):
        inst = random_offsets(np.random.default_rng(seed), 25)
        off, info = search_offsets(inst, time_limit=20)
        assert info["search_status"] == "found", info
        assert validate_offsets(inst, off)["peak"] <= inst.capacity


def test_canonical_search_proves_infeasibility_below_the_peak_live_size():
    inst = random_offsets(np.random.default_rng(0), 20)
    off, info = search_offsets(inst, capacity=inst.capacity - 64, time_limit=10)
    assert off is None and info["search_status"] == "infeasible"


def test_canonical_search_is_optimal_on_tiny_instances_against_exhaustive_offsets():
    rng = np.random.default_rng(4)
    for _ in range(4):
        n = 5
        lo = rng.integers(0, 6, n)
        inst = OffsetInstance("t", lo, lo + rng.integers(1, 5, n), rng.integers(1, 4, n), 1)
        best = brute_force_min_peak(inst)
        # exhaustive: every offset vector in [0, best) ^ n with a smaller peak must overlap
        ov = (inst.lower[:, None] < inst.upper[None, :]) & (inst.lower[None, :] < inst.upper[:, None])
        for offs in itertools.product(*(range(best - 1 - int(s) + 1) for s in inst.size)):
            o = np.array(offs)
            top = o + inst.size
            clash = ov & (o[:, None] < top[None, :]) & (o[None, :] < top[:, None])
            np.fill_diagonal(clash, False)
            assert clash.any(), f"exhaustive search found peak < {best}: {offs}"


def test_minimalloc_dfs_policy_fits_the_example_and_falls_back_when_out_of_budget():
    pol = make_policy(OFFSETS, "minimalloc_dfs", time_limit=5)
    row = run_episode(OFFSETS, pol, load_minimalloc("example"), 0)
    assert row["peak"] == 12 and row["fits"] == 1 and pol.info["search_status"] == "found"
    starved = make_policy(OFFSETS, "minimalloc_dfs", time_limit=5, node_limit=3)
    row = run_episode(OFFSETS, starved, load_minimalloc("A"), 0)
    assert starved.info["search_status"] == "node limit" and starved.info["fallback"] in (
        "tflite_bestfit",
        "tflm_firstfit",
        "firstfit_start",
    )
    assert row["peak"] == int((greedy_offsets(load_minimalloc("A"))[0] + load_minimalloc("A").size).max())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["D", "G", "H", "I", "J", "K"])  # about 1-3 CPU s each (A-K: see README)
def test_minimalloc_dfs_fits_minimalloc_instances_at_capacity(name):
    inst = load_minimalloc(name)
    pol = make_policy(OFFSETS, "minimalloc_dfs", time_limit=120)
    row = run_episode(OFFSETS, pol, inst, 0)
    assert pol.info["search_status"] == "found" and "fallback" not in pol.info
    assert row["fits"] == 1 and row["peak"] <= inst.capacity


def test_cpsat_offsets_reaches_the_planted_optimum_on_small_instances():
    inst = random_offsets(np.random.default_rng(1), 12)
    off, info = solve_offsets(inst, time_limit=10)
    assert info["solver_status"] == "OPTIMAL" and validate_offsets(inst, off)["peak"] == inst.capacity
    row = run_episode(OFFSETS, make_policy(OFFSETS, "cpsat", time_limit=10), inst, 0)
    assert row["peak"] == inst.capacity and row["gap_pct"] == 0.0


# ---------------------------------------------------------------------------------------------- MemoryMapping
def brute_force_mapping(prog: MemoryProgram) -> float:
    """Best execution time over every fast set that packs within the capacity (tiny programs only)."""
    best = execution_time(prog, np.zeros(prog.n_buffers, bool))
    for k in range(1, prog.n_buffers + 1):
        for subset in itertools.combinations(range(prog.n_buffers), k):
            s = list(subset)
            fast = np.zeros(prog.n_buffers, bool)
            fast[s] = True
            t = execution_time(prog, fast)
            if t >= best:
                continue
            search = CanonicalSearch(
                prog.buffer_lower[s], prog.buffer_upper[s], prog.buffer_size[s], prog.spec.fast_capacity
            )
            if search.solve(10.0)[0] is not None:
                best = t
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpsat_mapping_is_optimal_on_tiny_programs(seed):
    prog = random_program(np.random.default_rng(seed), 5, fast_fraction=0.4)
    assert prog.n_buffers <= 12
    cost = CostModel(prog)
    sel, off, info = solve_mapping(prog, cost, time_limit=20)
    assert info["solver_status"] == "OPTIMAL"
    planned = validate_mapping(prog, TierMapping(prog.name, sel.astype(np.int8), np.where(sel, off, -1)))
    assert planned["exec_time"] == pytest.approx(brute_force_mapping(prog), abs=0.01 * prog.n_ops)


def test_xla_msa_is_reproduced_decision_by_decision_in_the_default_env():
    for name in ("gpt2-tiny", "resnet-tiny", "unet-tiny"):
        prog = load_shipped_program(name)
        pol = make_policy(MAPPING, "xla_msa")
        row = run_episode(MAPPING, pol, prog, 0)
        fast, offsets = pol.plan_mapping(prog, CostModel(prog))
        assert pol.info["dropped"] == 0
        assert row["schedule"]["offset"] == np.where(fast, offsets, -1).tolist()
        assert row["all_fast_time"] <= row["exec_time"] < row["all_slow_time"]


def test_mapping_baselines_through_the_harness_on_real_programs():
    res = evaluate(MAPPING, ["xla_msa", "tflite_bestfit", "firstfit_start"], "memory/programs:train", seeds=1)
    assert len(res) == 12
    for r in res.rows:
        assert 1.0 < r["speedup"] <= r["all_slow_time"] / r["all_fast_time"] + 1e-9
        assert r["invalid_actions"] == 0


def test_planners_report_buffers_the_env_could_not_fit():
    """Plan (size order, best fit): c@0, b@60, a@0 fit in 100 B. The env in "start" order places a@0, then
    b@30 (above a), and c, live only with b, finds gaps of 30 B below and above it: dropped."""
    prog = MemoryProgram(
        "frag",
        MemorySpec(100, 10.0, 1.0),
        [0.0, 0.0, 0.0],
        [30, 40, 60],
        [0, 1, 2],
        [2, 3, 3],
        [0, 1, 1, 2, 2],
        [0, 0, 1, 1, 2],
        [True, False, True, False, True],
        ("a", "b", "c"),
    )
    pol = make_policy(MAPPING, "tflite_bestfit")
    row = run_episode(MAPPING, pol, prog, 0, env_kwargs={"order": "start"})
    assert pol.plan_mapping(prog, CostModel(prog))[1].tolist() == [0, 60, 0]
    assert pol.info == {"planned_fast": 3, "dropped": 1}
    assert row["schedule"]["offset"] == [0, 30, -1] and row["fast_buffers"] == 2
    # Same plan, env visiting in the planner's own order: nothing is lost.
    pol2 = make_policy(MAPPING, "tflite_bestfit")
    row2 = run_episode(MAPPING, pol2, prog, 0, env_kwargs={"order": "size"})
    assert pol2.info["dropped"] == 0 and row2["schedule"]["offset"] == [0, 60, 0]


def test_masked_env_choice_with_offset_candidates_follows_the_plan():
    prog = load_shipped_program("unet-tiny")
    pol = make_policy(MAPPING, "tflite_bestfit")
    row = run_episode(MAPPING, pol, prog, 0, env_kwargs={"offset_choice": 8})
    fast, offsets = pol.plan_mapping(prog, CostModel(prog))
    kept = np.array(row["schedule"]["tier"]) == 1
    assert pol.info["dropped"] == int((fast & ~kept).sum())
    assert row["invalid_actions"] == 0


def test_env_rejects_mapping_baselines_on_the_wrong_env():
    env = gym.make(OFFSETS, instance="example")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="orders buffers by benefit"):
        make_policy(MAPPING, "xla_msa").reset(env)
