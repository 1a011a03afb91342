"""``schedgym eval`` on the memory envs through the shared harness, and bad instance files."""

from __future__ import annotations

import json

from schedgym import cli
from schedgym.envs.memory.io import load_minimalloc
from schedgym.envs.memory.validator import validate_offsets


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return (0 if code is None else int(code)), out, err


def test_eval_offsets_on_minimalloc(tmp_path, capsys):
    out_file = tmp_path / "r.json"
    code, out, err = run(
        [
            "eval",
            "--env",
            "schedgym/MemoryOffsets-v0",
            "--policy",
            "tflite_bestfit,firstfit_start",
            "--dataset",
            "memory/minimalloc",
            "--out",
            str(out_file),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    rows = json.loads(out_file.read_text())["rows"]
    assert len(rows) == 22 and {r["instance"] for r in rows} == set("ABCDEFGHIJK")
    for r in rows:
        inst = load_minimalloc(r["instance"])
        assert validate_offsets(inst, r["schedule"]["offsets"])["peak"] == r["peak"]
        assert r["best_known"] == inst.best_known and r["fits"] == 0
    assert "tflite_bestfit" in out and "mean_gap_pct" in out


def test_eval_mapping_on_programs(capsys):
    code, out, err = run(
        [
            "eval",
            "--env",
            "schedgym/MemoryMapping-v0",
            "--policy",
            "xla_msa",
            "--dataset",
            "memory/programs:train",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "xla_msa" in out and "mean_exec_time" in out


def test_eval_instances_from_csv_and_json(tmp_path, capsys):
    p = tmp_path / "tiny.16.csv"
    p.write_text("id,lower,upper,size\na,0,4,8\nb,2,6,8\nc,4,8,8\n")
    code, out, err = run(
        [
            "eval",
            "--env",
            "schedgym/MemoryOffsets-v0",
            "--policy",
            "minimalloc_dfs:time_limit=5",
            "--instances",
            str(p),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "minimalloc_dfs" in out


def test_malformed_csv_exits_2_naming_line_and_field(tmp_path, capsys):
    p = tmp_path / "bad.16.csv"
    p.write_text("id,lower,upper,size\na,0,4,8\nb,6,2,8\n")
    code, _, err = run(
        [
            "eval",
            "--env",
            "schedgym/MemoryOffsets-v0",
            "--policy",
            "tflite_bestfit",
            "--instances",
            str(p),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2
    assert "bad:3: buffer 'b': live range [lower=6, upper=2) is reversed" in err


def test_malformed_program_exits_2_naming_the_json_path(tmp_path, capsys):
    p = tmp_path / "prog.json"
    p.write_text(
        json.dumps(
            {
                "format": "schedgym-memory-program/1",
                "name": "p",
                "spec": {"fast_capacity": 10, "fast_bandwidth": 2.0, "slow_bandwidth": 1.0},
                "buffers": [{"name": "x", "size": 4, "lower": 0, "upper": 1}],
                "ops": [{"name": "o", "compute": 1.0, "reads": ["x", "y"], "writes": []}],
            }
        )
    )
    code, _, err = run(
        [
            "eval",
            "--env",
            "schedgym/MemoryMapping-v0",
            "--policy",
            "xla_msa",
            "--instances",
            str(p),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and "ops[0].reads[1]: unknown buffer 'y'" in err
