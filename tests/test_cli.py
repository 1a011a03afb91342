"""The ``schedgym`` command, run in-process through ``schedgym.cli.main(argv)``."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from schedgym import cli  # noqa: E402
from schedgym.envs.jobshop import validate_schedule
from schedgym.envs.jobshop.io import format_instance, load_benchmark

ENV_ID = "schedgym/JobShop-v0"
SMALL = "3 3\n0 3 1 2 2 2\n1 2 0 1 2 4\n2 4 1 3 0 1\n"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code (argparse's SystemExit included), stdout, stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse usage errors and --version
        code = e.code
    out, err = capsys.readouterr()
    return (0 if code is None else int(code)), out, err


def rows_of(path) -> list[dict]:
    data = json.loads(path.read_text())
    return data["rows"] if isinstance(data, dict) else data


def test_list_prints_envs_datasets_with_sizes_and_baselines(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    assert ENV_ID in out
    assert re.search(r"^\s*jobshop/taillard\s.*\b80\b", out, re.MULTILINE), out
    assert re.search(r"^\s*jobshop/taillard-15x15\s.*\b10\b", out, re.MULTILINE)
    assert re.search(r"^\s*jobshop/ft\s.*\b3\b", out, re.MULTILINE)
    assert "jobshop/random-JxM" in out
    for name in ("spt", "lpt", "mwkr", "lwkr", "mor", "lor", "fifo", "random", "cpsat"):
        assert re.search(rf"\b{name}\b", out), name


def test_eval_dataset_writes_json_with_validated_schedules(tmp_path, capsys):
    out_file = tmp_path / "X.json"
    code, out, err = run(["eval", "--env", ENV_ID, "--policy", "spt", "--dataset", "jobshop/ft",
                          "--seeds", "1", "--out", str(out_file), "--no-progress"], capsys)
    assert code == 0, err
    rows = rows_of(out_file)
    assert sorted(r["instance"] for r in rows) == ["ft06", "ft10", "ft20"]
    for r in rows:
        assert r["policy"] == "spt" and r["seed"] == 0
        inst = load_benchmark(r["instance"])
        start = np.array(r["schedule"]["start_times"])
        assert start.shape == (inst.n_jobs, inst.n_ops_per_job)
        assert validate_schedule(inst, start)["makespan"] == r["makespan"]
    assert "spt" in out  # the summary table


def test_eval_csv_several_policies_and_seeds(tmp_path, capsys):
    out_file = tmp_path / "r.csv"
    code, _, err = run(["eval", "--env", ENV_ID, "--policy", "spt,mwkr", "--policy", "mor",
                        "--dataset", "jobshop/taillard-15x15:test", "--seeds", "2", "--out", str(out_file),
                        "--no-progress"], capsys)
    assert code == 0, err
    with out_file.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 * 2 * 3
    assert {r["policy"] for r in rows} == {"spt", "mwkr", "mor"}
    assert {int(r["seed"]) for r in rows} == {0, 1}
    r = rows[0]
    sched = json.loads(r["schedule"])
    inst = load_benchmark(r["instance"])
    assert validate_schedule(inst, np.array(sched["start_times"]))["makespan"] == int(r["makespan"])


def test_eval_policy_options(tmp_path, capsys):
    p = tmp_path / "ft06.txt"
    p.write_text(format_instance(load_benchmark("ft06")))
    out_file = tmp_path / "c.json"
    code, _, err = run(["eval", "--env", ENV_ID, "--policy", "cpsat:time_limit=5", "--instances", str(p),
                        "--out", str(out_file), "--no-progress"], capsys)
    assert code == 0, err
    (row,) = rows_of(out_file)
    assert row["makespan"] == 55


def test_eval_instance_file(tmp_path, capsys):
    p = tmp_path / "tiny.txt"
    p.write_text(SMALL)
    out_file = tmp_path / "t.json"
    code, _, err = run(["eval", "--env", ENV_ID, "--policy", "spt", "--instances", str(p),
                        "--out", str(out_file), "--no-progress"], capsys)
    assert code == 0, err
    (row,) = rows_of(out_file)
    assert row["instance"] == "tiny" and row["policy"] == "spt"
    assert "gap_pct" not in row  # no bound known for a user file
    from schedgym.envs.jobshop.io import parse_instance

    inst = parse_instance(SMALL)
    assert validate_schedule(inst, np.array(row["schedule"]["start_times"]))["makespan"] == row["makespan"]


def test_eval_instance_directory(tmp_path, capsys):
    d = tmp_path / "insts"
    d.mkdir()
    (d / "b.txt").write_text(SMALL)
    (d / "a.txt").write_text(format_instance(load_benchmark("ft06")))
    out_file = tmp_path / "d.json"
    code, _, err = run(["eval", "--env", ENV_ID, "--policy", "mwkr", "--instances", str(d),
                        "--out", str(out_file), "--no-progress"], capsys)
    assert code == 0, err
    assert [r["instance"] for r in rows_of(out_file)] == ["a", "b"]


def test_eval_malformed_instance_file_exits_2_naming_the_line(tmp_path, capsys):
    p = tmp_path / "bad.txt"
    p.write_text("3 3\n0 3 1 2 2 2\n1 2 0 1 2\n2 4 1 3 0 1\n")
    out_file = tmp_path / "never.json"
    code, out, err = run(["eval", "--env", ENV_ID, "--policy", "spt", "--instances", str(p),
                          "--out", str(out_file), "--no-progress"], capsys)
    assert code == 2
    assert "bad:3:" in err and "5 numbers" in err, err
    assert "Traceback" not in err
    assert not out_file.exists()


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--policy", "nosuch", "--dataset", "jobshop/ft"], r"unknown policy 'nosuch'.*'spt'"),
        (["--policy", "spt", "--dataset", "jobshop/nosuch"], r"unknown dataset 'jobshop/nosuch'"),
        (["--policy", "spt", "--dataset", "jobshop/taillard:train"], r"no split 'train'"),
        (["--policy", "spt", "--dataset", "jobshop/ft", "--seeds", "0"], r"--seeds must be >= 1"),
        (["--policy", "cpsat:time_limit=0", "--dataset", "jobshop/ft"], r"time_limit must be > 0"),
        (["--policy", "cpsat:bogus=1", "--dataset", "jobshop/ft"], r"bogus"),
        (["--policy", "spt", "--instances", "/nonexistent/file.txt"], r"no such file"),
    ],
)
def test_eval_bad_input_exits_2_with_message(argv, pattern, capsys):
    code, _, err = run(["eval", "--env", ENV_ID, "--no-progress", *argv], capsys)
    assert code == 2
    assert re.search(pattern, err), err
    assert "Traceback" not in err


def test_eval_unknown_env(capsys):
    argv = ["eval", "--env", "schedgym/Nope-v0", "--policy", "spt", "--dataset", "jobshop/ft"]
    code, _, err = run(argv, capsys)
    assert code == 2 and "schedgym/Nope-v0" in err and ENV_ID in err


def test_usage_errors_exit_2(capsys):
    # neither --dataset nor --instances
    code, _, err = run(["eval", "--env", ENV_ID, "--policy", "spt"], capsys)
    assert code == 2 and "--dataset" in err
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2


def test_no_command_prints_help(capsys):
    code, out, _ = run([], capsys)
    assert code == 0 and "list" in out and "eval" in out


@pytest.mark.slow
def test_run_writes_results_table_and_gantt(tmp_path, capsys):
    out_dir = tmp_path / "res"
    code, out, err = run(["run", "--group", "15x15", "--cpsat-time-limit", "0.2", "--out", str(out_dir),
                          "--no-progress", "--no-train"], capsys)
    assert code == 0, err
    rows = rows_of(out_dir / "results.json")
    assert len(rows) == 10 * 9
    assert {r["policy"] for r in rows} == {"spt", "lpt", "mwkr", "lwkr", "mor", "lor", "fifo", "random",
                                           "cpsat"}
    for r in rows:
        inst = load_benchmark(r["instance"])
        assert validate_schedule(inst, np.array(r["schedule"]["start_times"]))["makespan"] == r["makespan"]
    with (out_dir / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 90
    # the deterministic rules' published means show up in the table
    assert re.search(r"^spt\s+10\s+25\.89", out, re.MULTILINE), out
    assert re.search(r"^mwkr\s+10\s+19\.15", out, re.MULTILINE), out
    best = min(rows, key=lambda r: r["gap_pct"])
    pngs = list(out_dir.glob("gantt_*.png"))
    assert len(pngs) == 1
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pngs[0].name.startswith(f"gantt_{best['instance']}_")
    assert f"makespan {best['makespan']}" in out


def test_run_bad_group(capsys):
    code, _, err = run(["run", "--group", "7x7"], capsys)
    assert code == 2 and "'15x15'" in err
