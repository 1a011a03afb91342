"""The independent memory validators and the dynamics they check (fitting rules, skyline, cost model)."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from schedgym.envs.memory import validator
from schedgym.envs.memory.generator import random_program
from schedgym.envs.memory.io import load_minimalloc
from schedgym.envs.memory.sim import AddressSpace, CostModel, MappingState, OffsetState, pack
from schedgym.envs.memory.types import MemoryProgram, MemorySpec, OffsetInstance, TierMapping
from schedgym.envs.memory.validator import MappingError, execution_time, validate_mapping, validate_offsets


def tiny() -> MemoryProgram:
    """op0 (compute 5 ns) reads w (40 B), x (20 B), writes y (30 B); op1 (compute 100 ns) reads w, y.
    Slow memory 1 B/ns, fast 10 B/ns, fast capacity 100 B."""
    return MemoryProgram(
        "tiny",
        MemorySpec(100, 10.0, 1.0),
        [5.0, 100.0],
        [40, 20, 30],
        [0, 0, 0],
        [2, 1, 2],
        [0, 0, 0, 1, 1],
        [0, 1, 2, 0, 2],
        [False, False, True, False, False],
        ("w", "x", "y"),
    )


def test_execution_time_by_hand():
    p = tiny()
    # all slow: op0 max(5, 90/1) = 90; op1 max(100, 70/1) = 100
    assert execution_time(p, np.zeros(3, bool)) == 190.0
    # w fast: op0 max(5, 4 + 50) = 54; op1 max(100, 4 + 30) = 100
    assert execution_time(p, np.array([True, False, False])) == 154.0
    # all fast: op0 max(5, 9) = 9; op1 100
    assert execution_time(p, np.ones(3, bool)) == 109.0


def test_validate_mapping_recomputes_and_checks_rectangles():
    p = tiny()
    res = validate_mapping(p, TierMapping("tiny", np.array([1, 1, 0], np.int8), np.array([0, 40, -1])))
    assert res["exec_time"] == max(5, 6 + 30) + max(100, 4 + 30) == 136.0
    assert res["all_slow_time"] == 190.0 and res["all_fast_time"] == 109.0
    assert res["fast_buffers"] == 2 and res["fast_peak"] == 60 and res["speedup"] == 190.0 / 136.0
    # w [0,2) and x [0,1) both fast at overlapping addresses
    with pytest.raises(MappingError, match=r"buffers 0 \('w'\) and 1 \('x'\) overlap"):
        validate_mapping(p, (np.array([1, 1, 0]), np.array([0, 30, -1])))
    with pytest.raises(MappingError, match=r"past the capacity 100"):
        validate_mapping(p, (np.array([1, 0, 0]), np.array([70, -1, -1])))
    with pytest.raises(MappingError, match=r"slow buffer 1 \('x'\) has a fast-memory offset 3"):
        validate_mapping(p, (np.array([1, 0, 0]), np.array([0, 3, -1])))
    with pytest.raises(MappingError, match=r"buffer 2 \('y'\) has tier -1"):
        validate_mapping(p, (np.array([1, 0, -1]), np.array([0, -1, -1])))


def test_validate_offsets_half_open_ranges_and_overlaps():
    inst = OffsetInstance("x", [0, 3, 0], [3, 9, 9], [4, 4, 4], 12)
    assert validate_offsets(inst, np.array([8, 8, 4]))["peak"] == 12  # [0,3) and [3,9) may share an address
    with pytest.raises(
        MappingError, match=r"buffers 2 \('2'\) and 1 \('1'\) overlap|buffers 1 \('1'\) and 2 \('2'\) overlap"
    ):
        validate_offsets(inst, np.array([8, 4, 2]))
    with pytest.raises(MappingError, match=r"negative offset -1"):
        validate_offsets(inst, np.array([8, -1, 4]))
    assert validate_offsets(inst, np.array([0, 0, 20]))["fits"] == 0


def test_validator_is_independent_of_env_and_simulator():
    tree = ast.parse(inspect.getsource(validator))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not any(
        m and (m.endswith(".sim") or m.endswith(".env") or m.endswith(".envbase")) for m in imported
    ), imported


# ---------------------------------------------------------------------------------------------- fitting
def test_best_fit_takes_the_smallest_gap_first_fit_the_lowest():
    # Placed: [0,10) and [30,35) and [40,100) over the same time;
    # gaps [10,30) (20) and [35,40) (5), then from 100 to the capacity.
    lower, upper = np.zeros(4, np.int64), np.ones(4, np.int64)
    space = AddressSpace(lower, upper, np.array([10, 5, 60, 4]), 200)
    for b, off in ((0, 0), (1, 30), (2, 40)):
        space.place(b, off)
    assert space.gaps(3) == [(10, 30), (35, 40), (100, 200)]
    assert space.fit(3, "best") == 35 and space.fit(3, "first") == 10
    assert space.candidates(3) == [10, 35, 100]
    space2 = AddressSpace(lower, upper, np.array([10, 5, 60, 191]), 200)
    space2.place(0, 0)
    assert space2.fit(3, "best") == -1 and space2.candidates(3) == []  # the only gap, [10, 200), holds 190
    unbounded = AddressSpace(lower, upper, np.array([10, 5, 60, 191]), None)
    unbounded.place(0, 0)
    assert unbounded.fit(3, "best") == 10


def test_greedy_rules_reproduce_the_published_minimalloc_heights():
    """README of the MiniMalloc data: bestfit/size, firstfit/size, firstfit/start heights (x capacity)."""
    table = {
        "A": (1.311, 1.290, 1.707),
        "B": (1.347, 1.347, 1.604),
        "C": (1.352, 1.352, 1.671),
        "D": (1.255, 1.231, 1.331),
        "E": (1.401, 1.369, 1.836),
        "F": (1.375, 1.375, 1.200),
        "G": (1.332, 1.332, 1.170),
        "H": (1.355, 1.355, 1.258),
        "I": (1.410, 1.410, 1.822),
        "J": (1.271, 1.243, 1.737),
        "K": (1.327, 1.290, 2.273),
    }
    from schedgym.baselines._memory import size_order, start_order

    for name, want in table.items():
        i = load_minimalloc(name)
        got = []
        for order, rule in ((size_order, "best"), (size_order, "first"), (start_order, "first")):
            off = pack(i.lower, i.upper, i.size, order(i.lower, i.size), rule)
            got.append(round(validate_offsets(i, off)["capacity_ratio"], 3))
        assert tuple(got) == want, name


def test_skyline_replay_in_offset_order_reproduces_a_resting_packing():
    inst = load_minimalloc("K")
    st = OffsetState(inst)
    for b in np.lexsort((np.arange(inst.n_buffers), inst.reference_offsets)).tolist():
        st.place(b)
    assert (st.offset <= inst.reference_offsets).all()  # never higher: replay compacts
    assert validate_offsets(inst, st.offset)["peak"] == st.peak <= inst.best_known


def test_skyline_offset_is_the_highest_overlapping_top():
    inst = OffsetInstance("x", [0, 2, 1, 5], [3, 6, 4, 8], [4, 2, 3, 1], 10)
    st = OffsetState(inst)
    st.place(0)
    st.place(1)  # overlaps 0 in [2,3): goes on top of it, at 4
    assert st.offset[:2].tolist() == [0, 4]
    assert st.sky[2] == 6 and st.sky[3] == 6  # 2 overlaps both; 3 overlaps only buffer 1 (top 6)
    st.place(3)
    assert st.offset[3] == 6 and st.peak == 7
    with pytest.raises(ValueError, match="already placed"):
        st.place(3)


# ---------------------------------------------------------------------------------------------- cost model
def test_benefit_is_the_single_buffer_saving():
    p = random_program(np.random.default_rng(3), 20)
    cost = CostModel(p)
    base = execution_time(p, np.zeros(p.n_buffers, bool))
    assert cost.all_slow == base
    for b in range(p.n_buffers):
        fast = np.zeros(p.n_buffers, bool)
        fast[b] = True
        assert cost.benefit[b] == pytest.approx(base - execution_time(p, fast), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_mapping_state_time_equals_the_validator_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    p = random_program(rng, 30)
    cost = CostModel(p)
    st = MappingState(p, cost, cost.order("start"))
    saved = 0.0
    while not st.done:
        off = st.fast.fit(st.current, "first") if rng.random() < 0.6 else -1
        saved += st.decide(off)
    res = validate_mapping(p, TierMapping(p.name, st.tier, st.fast.offset))
    assert st.exec_time() == res["exec_time"]
    assert saved == pytest.approx(cost.all_slow - res["exec_time"], rel=1e-9)


def test_visit_orders():
    p = random_program(np.random.default_rng(0), 30)
    cost = CostModel(p)
    pr = cost.order("priority")
    key = cost.benefit / np.sqrt(p.buffer_size)
    assert (np.diff(key[pr]) <= 0).all()
    assert (np.diff(p.buffer_size[cost.order("size")]) <= 0).all()
    assert (np.diff(p.buffer_lower[cost.order("start")]) >= 0).all()
    with pytest.raises(ValueError, match="order must be one of"):
        cost.order("random")
