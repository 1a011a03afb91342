"""Memory data: the shipped MiniMalloc instances and programs, the file formats and their bad-input errors,
the datasets and generators."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from schedgym import datasets
from schedgym.envs.memory.datasets import PROGRAMS, PROGRAMS_TEST, PROGRAMS_TRAIN, program_buffers
from schedgym.envs.memory.generator import random_offsets, random_program
from schedgym.envs.memory.io import (
    InstanceFormatError,
    format_offsets_csv,
    load_minimalloc,
    load_offsets_csv,
    load_shipped_program,
    parse_offsets_csv,
    parse_program,
    program_from_dict,
    program_names,
    program_to_dict,
)
from schedgym.envs.memory.types import MemoryProgram, MemorySpec, OffsetInstance
from schedgym.envs.memory.validator import validate_offsets

# README of schedgym/data/memory/minimalloc: buffers and peak live / capacity per instance.
MINIMALLOC = {
    "A": (154, 1.000),
    "B": (170, 1.000),
    "C": (203, 0.991),
    "D": (213, 0.940),
    "E": (215, 1.000),
    "F": (296, 1.000),
    "G": (308, 1.000),
    "H": (316, 1.000),
    "I": (374, 1.000),
    "J": (409, 0.943),
    "K": (454, 1.000),
}


# ---------------------------------------------------------------------------------------------- MiniMalloc
@pytest.mark.parametrize("name", sorted(MINIMALLOC))
def test_minimalloc_instance_and_reference_solution(name):
    inst = load_minimalloc(name)
    n, live = MINIMALLOC[name]
    assert inst.n_buffers == n and inst.capacity == 1 << 20
    assert round(inst.peak_live() / inst.capacity, 3) == live
    assert (inst.size % 1024 == 0).all() and inst.upper.max() == 1 << 20
    res = validate_offsets(inst, inst.reference_offsets)
    assert res["fits"] == 1 and res["peak"] == inst.best_known <= inst.capacity


def test_eight_minimalloc_instances_have_zero_slack():
    zero = [n for n in MINIMALLOC if load_minimalloc(n).peak_live() == 1 << 20]
    assert zero == ["A", "B", "E", "F", "G", "H", "I", "K"]


def test_minimalloc_example_matches_its_readme():
    inst = load_minimalloc("example")
    assert inst.ids == ("b1", "b2", "b3", "b4", "b5") and inst.capacity == 12
    res = validate_offsets(inst, np.array([8, 8, 4, 4, 0]))  # README: b1 [0,3) and b2 [3,9) share offset 8
    assert res == {"peak": 12, "fits": 1, "capacity_ratio": 1.0}


def test_minimalloc_data_ships_with_its_readme():
    root = resources.files("schedgym.data").joinpath("memory/minimalloc")
    text = root.joinpath("README.md").read_text()
    assert "Apache-2.0" in text and "9f5cf810fec4494df473c23cffd0567989e81b69" in text
    assert sorted(p.name for p in root.joinpath("challenging").iterdir()) == [
        f"{n}.1048576.csv" for n in MINIMALLOC
    ]


# ---------------------------------------------------------------------------------------------- CSV
GOOD = "id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\n"


def test_csv_round_trip_and_capacity_from_file_name(tmp_path):
    inst = parse_offsets_csv(GOOD, "x")
    assert inst.capacity == inst.peak_live() == 4 and inst.meta["capacity_source"].startswith("peak live")
    p = tmp_path / "mine.100.csv"
    p.write_text(format_offsets_csv(inst))
    back = load_offsets_csv(p)
    assert back.name == "mine" and back.capacity == 100 and back.ids == ("b1", "b2")
    assert np.array_equal(back.lower, inst.lower) and np.array_equal(back.size, inst.size)
    assert load_offsets_csv(p, capacity=7).capacity == 7


@pytest.mark.parametrize(
    "text, match",
    [
        ("", r"empty file"),
        ("id,lower,size\nb1,0,4\n", r"x:1: header must be 'id,lower,upper,size'"),
        ("id,lower,upper,size\n", r"no buffer rows"),
        (
            "id,lower,upper,size\nb1,0,3,-4\n",
            r"x:2: buffer 'b1': field 'size' must be a positive integer, got -4",
        ),
        (
            "id,lower,upper,size\nb1,0,3,0\n",
            r"x:2: buffer 'b1': field 'size' must be a positive integer, got 0",
        ),
        (
            "id,lower,upper,size\nb1,0,3,4\nb2,5,5,4\n",
            r"x:3: buffer 'b2': live range \[lower=5, upper=5\) is empty",
        ),
        ("id,lower,upper,size\nb1,7,3,4\n", r"x:2: buffer 'b1': live range \[lower=7, upper=3\) is reversed"),
        ("id,lower,upper,size\nb1,-1,3,4\n", r"x:2: buffer 'b1': field 'lower' must be >= 0"),
        ("id,lower,upper,size\nb1,0,3,four\n", r"x:2: field 'size' must be an integer, got 'four'"),
        ("id,lower,upper,size\nb1,0,3\n", r"x:2: expected 4 fields"),
        ("id,lower,upper,size\nb1,0,3,4,9\n", r"x:2: expected 4 fields"),
        ("id,lower,upper,size\nb1,0,3,4\nb1,3,9,4\n", r"x:3: buffer id 'b1' already used on line 2"),
        ("id,lower,upper,size\n,0,3,4\n", r"x:2: field 'id' is empty"),
        ("id,lower,upper,size,offset\nb1,0,3,4,-2\n", r"x:2: buffer 'b1': field 'offset' must be >= 0"),
    ],
)
def test_malformed_csv_names_line_and_field(text, match):
    with pytest.raises(InstanceFormatError, match=match):
        parse_offsets_csv(text, "x")


def test_csv_offset_column_is_a_reference_solution():
    inst = parse_offsets_csv("id,lower,upper,size,offset\nb1,0,3,4,8\nb2,3,9,4,8\n", "x")
    assert inst.reference_offsets.tolist() == [8, 8] and inst.best_known == 12


def test_offset_instance_constructor_checks_fields():
    with pytest.raises(ValueError, match=r"buffer 1 \('1'\): size must be a positive integer, got -3"):
        OffsetInstance("x", [0, 0], [2, 2], [1, -3], 8)
    with pytest.raises(ValueError, match=r"capacity must be a positive integer"):
        OffsetInstance("x", [0], [2], [1], 0)
    with pytest.raises(ValueError, match=r"buffer id 'a' appears more than once"):
        OffsetInstance("x", [0, 1], [2, 3], [1, 1], 8, ids=("a", "a"))


# ---------------------------------------------------------------------------------------------- programs
def tiny_program_dict() -> dict:
    return {
        "format": "schedgym-memory-program/1",
        "name": "tiny",
        "spec": {"fast_capacity": 100, "fast_bandwidth": 10.0, "slow_bandwidth": 1.0},
        "buffers": [
            {"name": "w", "size": 40, "lower": 0, "upper": 2},
            {"name": "x", "size": 20, "lower": 0, "upper": 1},
            {"name": "y", "size": 30, "lower": 0, "upper": 2},
        ],
        "ops": [
            {"name": "op0", "compute": 5.0, "reads": ["w", "x"], "writes": ["y"]},
            {"name": "op1", "compute": 100.0, "reads": ["w", "y"], "writes": []},
        ],
    }


def test_program_json_round_trip():
    prog = program_from_dict(tiny_program_dict())
    assert (prog.n_ops, prog.n_buffers, prog.n_accesses) == (2, 3, 5)
    back = parse_program(json.dumps(program_to_dict(prog)), "back")
    for f in (
        "op_compute",
        "buffer_size",
        "buffer_lower",
        "buffer_upper",
        "access_op",
        "access_buffer",
        "access_write",
    ):
        assert np.array_equal(getattr(prog, f), getattr(back, f)), f
    assert back.buffer_names == prog.buffer_names and back.spec == prog.spec


def _broken(path: str, value) -> dict:
    d = tiny_program_dict()
    *head, last = path.split(".")
    cur = d
    for k in head:
        cur = cur[int(k)] if k.isdigit() else cur[k]
    cur[int(last) if last.isdigit() else last] = value
    return d


@pytest.mark.parametrize(
    "path, value, match",
    [
        ("ops.1.reads.1", "nope", r"ops\[1\]\.reads\[1\]: unknown buffer 'nope'"),
        ("buffers.0.size", -40, r"buffers\[0\]\.size: buffer 'w': expected a positive integer, got -40"),
        ("buffers.1.upper", 0, r"buffers\[1\]: buffer 'x': live range \[lower=0, upper=0\) is empty"),
        ("buffers.2.lower", 2, r"buffers\[2\]: buffer 'y': live range \[lower=2, upper=2\) is empty"),
        ("buffers.0.lower", 3, r"buffers\[0\]: buffer 'w': live range \[lower=3, upper=2\) is reversed"),
        ("buffers.0.upper", 9, r"buffers\[0\]\.upper: buffer 'w': 9 is past the last op"),
        ("buffers.1.upper", 1, None),  # fine: x is read only by op 0
        ("ops.0.compute", -1.0, r"ops\[0\]\.compute: expected a finite time >= 0"),
        ("ops.0.compute", "5", r"ops\[0\]\.compute: expected int or float, got '5'"),
        ("buffers.0.size", 4.5, r"buffers\[0\]\.size: expected int, got 4.5"),
        ("spec.fast_capacity", 0, r"spec: MemorySpec.fast_capacity must be a positive integer"),
        ("spec.slow_bandwidth", -1.0, r"spec: MemorySpec.slow_bandwidth must be a finite number > 0"),
        ("format", "v2", r"field 'format' must be"),
    ],
)
def test_malformed_program_names_the_json_path(path, value, match):
    d = _broken(path, value)
    if match is None:
        program_from_dict(d)
        return
    with pytest.raises(InstanceFormatError, match=match):
        program_from_dict(d, "tiny.json")


def test_program_access_outside_live_range_is_rejected():
    d = tiny_program_dict()
    d["buffers"][1]["upper"] = 1
    d["ops"][1]["reads"].append("x")  # op 1 reads x, which died after op 0
    with pytest.raises(
        InstanceFormatError,
        match=r"ops\[1\]\.reads\[2\]: op 1 uses buffer 'x' outside its live range \[0, 1\)",
    ):
        program_from_dict(d)


def test_program_bad_json_and_missing_fields():
    with pytest.raises(InstanceFormatError, match=r"p.json: not valid JSON"):
        parse_program("{", "p.json")
    d = tiny_program_dict()
    del d["ops"][0]["reads"]
    with pytest.raises(InstanceFormatError, match=r"ops\[0\]: missing field 'reads'"):
        program_from_dict(d)


def test_program_constructor_rejects_unknown_op_and_buffer_indices():
    spec = MemorySpec(10, 2.0, 1.0)
    with pytest.raises(ValueError, match=r"access 1: unknown buffer 5"):
        MemoryProgram("p", spec, [1.0], [4], [0], [1], [0, 0], [0, 5], [False, True])
    with pytest.raises(ValueError, match=r"access 0: unknown op 3"):
        MemoryProgram("p", spec, [1.0], [4], [0], [1], [3], [0], [False])
    with pytest.raises(ValueError, match=r"reads buffer 0 more than once"):
        MemoryProgram("p", spec, [1.0], [4], [0], [1], [0, 0], [0, 0], [False, False])


@pytest.mark.parametrize("name", PROGRAMS)
def test_shipped_programs_load_and_are_consistent(name):
    prog = load_shipped_program(name)
    assert prog.name == name and prog.n_ops >= 20 and prog.n_buffers >= 50
    assert (prog.op_compute > 0).all()
    assert prog.spec.fast_capacity == int(0.25 * prog.meta["peak_live_bytes"]) // 1024 * 1024
    kinds = {x["kind"] for x in prog.meta["buffer_extra"]}
    assert {"parameter", "activation", "output"} <= kinds
    # Every op writes something and parameters are defined at program start.
    assert set(prog.access_op[prog.access_write].tolist()) == set(range(prog.n_ops))
    params = [i for i, x in enumerate(prog.meta["buffer_extra"]) if x["kind"] == "parameter"]
    assert (prog.buffer_lower[params] == 0).all()
    assert program_buffers(prog).capacity == prog.meta["peak_live_bytes"]


def test_shipped_program_list_matches_the_files():
    assert program_names() == tuple(sorted(PROGRAMS))
    assert set(PROGRAMS_TRAIN).isdisjoint(PROGRAMS_TEST)


# ------------------------------------------------------------------------------------ datasets, generators
def test_named_datasets_and_splits():
    mm = datasets.get("memory/minimalloc")
    assert mm.env_id == "schedgym/MemoryOffsets-v0" and mm.names("test") == tuple("ABCDEFGHIJK")
    assert mm.load("A").best_known == 1 << 20
    progs = datasets.get("memory/programs")
    assert progs.names("train") == PROGRAMS_TRAIN and progs.names("test") == PROGRAMS_TEST
    assert (
        datasets.get("memory/program-buffers").load("unet-tiny").n_buffers
        == load_shipped_program("unet-tiny").n_buffers
    )
    for name in ("memory/random-programs-30", "memory/random-offsets-25"):
        ds = datasets.get(name)
        assert ds.split_size("train") is None and ds.split_size("test") == 100
    with pytest.raises(ValueError, match="N >= 2"):
        datasets.get("memory/random-programs-1")


@pytest.mark.parametrize(
    "name, key", [("memory/random-programs-30", "program"), ("memory/random-offsets-25", "offsets")]
)
def test_random_datasets_are_seeded_and_within_their_declared_padding(name, key):
    ds = datasets.get(name)
    a, b = ds.load(ds.names("test")[3]), datasets.get(name).load(ds.names("test")[3])
    c = ds.sample(np.random.default_rng(1))
    d = ds.sample(np.random.default_rng(1))
    e = ds.sample(np.random.default_rng(2))
    size = (lambda i: i.buffer_size) if key == "program" else (lambda i: i.size)
    assert np.array_equal(size(a), size(b)) and np.array_equal(size(c), size(d))
    assert not np.array_equal(size(c), size(e)) or size(c).size != size(e).size
    from schedgym.envs.memory.offsets_env import offsets_sizes

    pad = ds.meta["max_size"]
    for seed in range(20):
        inst = ds.sample(np.random.default_rng(seed))
        got = (
            {"ops": inst.n_ops, "buffers": inst.n_buffers, "accesses": inst.n_accesses}
            if key == "program"
            else offsets_sizes(inst)
        )
        assert all(got[k] <= pad[k] for k in pad), (got, pad)


def test_random_offsets_are_zero_slack_with_a_valid_planted_optimum():
    for seed in range(10):
        inst = random_offsets(np.random.default_rng(seed), 30)
        assert inst.peak_live() == inst.capacity == inst.best_known
        assert validate_offsets(inst, inst.reference_offsets)["peak"] == inst.capacity


def test_random_program_has_weights_from_program_start_and_a_live_output():
    prog = random_program(np.random.default_rng(0), 25)
    w = [i for i, n in enumerate(prog.buffer_names) if n.startswith("w")]
    assert w and (prog.buffer_lower[w] == 0).all()
    assert prog.buffer_upper.max() == prog.n_ops
    assert prog.spec.fast_capacity % 1024 == 0


def test_file_loaders_are_registered(tmp_path):
    p = tmp_path / "a.64.csv"
    p.write_text(GOOD)
    (inst,) = datasets.load_files("schedgym/MemoryOffsets-v0", [str(p)])
    assert inst.capacity == 64
    q = tmp_path / "prog.json"
    q.write_text(json.dumps(tiny_program_dict()))
    (prog,) = datasets.load_files("schedgym/MemoryMapping-v0", [str(q)])
    assert prog.n_ops == 2
