"""The agent side of the ``schedgym`` command: ``train``, ``eval --policy PATH`` and ``run`` with an agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import schedgym  # noqa: F401
from schedgym import cli
from schedgym.agents.checkpoint import save_net
from schedgym.agents.encoders import EncoderConfig
from schedgym.agents.model import GraphPolicyNet, NetConfig, ObsSpec
from schedgym.agents.plots import read_scalars
from schedgym.agents.rollout import make_env
from schedgym.envs.jobshop import validate_schedule
from schedgym.envs.jobshop.io import load_benchmark

torch.set_num_threads(1)
JOBSHOP = "schedgym/JobShop-v0"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return (0 if code is None else int(code)), out, err


@pytest.fixture
def agent_pt(tmp_path):
    env = make_env(JOBSHOP, {"instance": "ft06"})
    torch.manual_seed(0)
    cfg = NetConfig(EncoderConfig(hidden=8, layers=1), head_hidden=8)
    net = GraphPolicyNet(ObsSpec.from_space(env.observation_space), cfg)
    return save_net(net, tmp_path / "tiny_agent.pt", {"algo": "test"})


def test_eval_accepts_a_checkpoint_path_next_to_baselines(agent_pt, tmp_path, capsys):
    out_file = tmp_path / "r.json"
    code, out, err = run(["eval", "--env", JOBSHOP, "--policy", f"mwkr,{agent_pt}", "--dataset", "jobshop/ft",
                          "--out", str(out_file), "--no-progress"], capsys)
    assert code == 0, err
    rows = json.loads(out_file.read_text())["rows"]
    assert {r["policy"] for r in rows} == {"mwkr", "tiny_agent"}
    for r in rows:
        inst = load_benchmark(r["instance"])
        assert validate_schedule(inst, np.array(r["schedule"]["start_times"]))["makespan"] == r["makespan"]
        assert r["invalid_actions"] == 0
    assert "tiny_agent" in out


def test_eval_bad_policy_path_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(["eval", "--env", JOBSHOP, "--policy", str(tmp_path / "nope.pt"),
                        "--dataset", "jobshop/ft"], capsys)
    assert code == 2 and "nope.pt" in err and "does not exist" in err


def test_train_selflabel_from_the_command_line(tmp_path, capsys):
    code, out, err = run(["train", "--algo", "selflabel", "--env", JOBSHOP, "--env-kwargs",
                          '{"dataset": "jobshop/random-4x3"}', "--iterations", "3", "--samples", "4",
                          "--hidden", "8", "--layers", "1", "--val-episodes", "2", "--out", str(tmp_path),
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "trained 3 iterations" in out
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    assert "selflabel/loss" in read_scalars(tmp_path / "tb")


def test_train_errors_and_help(capsys):
    code, _, err = run(["train", "--algo", "sb3", "--env", "schedgym/Nope-v0"], capsys)
    assert code == 2 and "Nope-v0" in err
    code, _, err = run(["train", "--algo", "sb3", "--total-timesteps", "many"], capsys)
    assert code == 2 and "--total-timesteps" in err
    code, out, _ = run(["train", "--algo", "rllib", "--help"], capsys)
    assert code == 0 and "--num-env-runners" in out and "--address" in out
    code, _, err = run(["eval", "--env", JOBSHOP, "--policy", "spt", "--dataset", "jobshop/ft", "--bogus"],
                       capsys)
    assert code == 2 and "--bogus" in err


@pytest.mark.slow
def test_run_trains_an_agent_and_compares_it_with_every_baseline(tmp_path, capsys):
    out_dir = tmp_path / "res"
    code, out, err = run(["run", "--group", "15x15", "--cpsat-time-limit", "0.2", "--train-seconds", "8",
                          "--out", str(out_dir), "--no-progress"], capsys)
    assert code == 0, err
    rows = json.loads((out_dir / "results.json").read_text())["rows"]
    assert len(rows) == 10 * 10
    assert {r["policy"] for r in rows} == {"spt", "lpt", "mwkr", "lwkr", "mor", "lor", "fifo", "random",
                                           "cpsat", "gnn"}
    for r in (r for r in rows if r["policy"] == "gnn"):
        inst = load_benchmark(r["instance"])
        assert validate_schedule(inst, np.array(r["schedule"]["start_times"]))["makespan"] == r["makespan"]
    assert "gnn" in out and "Training a GNN agent" in out
    for name in ("learning_curve.png", "agent/best.pt", "agent/last.pt"):
        assert (out_dir / name).is_file(), name
    assert any((out_dir / "agent" / "tb").glob("events.out.tfevents.*"))
    assert (out_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(out_dir.glob("schedule_gnn_ta*.png"))) == 1
    assert len(list(out_dir.glob("gantt_*.png"))) == 1
