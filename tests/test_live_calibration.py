"""Calibration round trip: the profiler's table loads into the simulator's cost model and drives LLMServing-v0;
the fidelity command runs end to end."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from tests_live_helpers import DEVICE, small_workload

import schedgym  # noqa: F401
from schedgym.cli import main
from schedgym.envs.serving.costmodel import CALIBRATION_SCHEMA, TableCostModel, load_calibration_table
from schedgym.hwbackend.fidelity import fidelity, format_report
from schedgym.hwbackend.profiler import calibrate, write_table

torch.set_num_threads(1)
# Decode grid above the largest batch the test workload can form (12 requests), so nothing extrapolates.
GRID = dict(prefill=(0, 1, 16, 64), decode=(0, 1, 4, 16), context=(16, 128), repeats=3, warmup=1)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> str:
    doc = calibrate("tiny", device=DEVICE, **GRID)
    return str(write_table(doc, tmp_path_factory.mktemp("cal") / "tiny.json"))


def test_table_round_trips_into_the_simulator_cost_model(table: str) -> None:
    doc = json.loads(open(table).read())
    assert doc["schema"] == CALIBRATION_SCHEMA and doc["model"] == "schedgym-tiny" and doc["gpu"] == "CPU"
    assert len(doc["rows"]) == 3 + 3 * 4 * 2  # D=0 with P>0, then D>0 x every P x 2 contexts
    cm = TableCostModel(load_calibration_table(table))
    b = cm.table.b.copy()
    b[0, 0] = 0.0  # the (0, 0) node is extrapolated by the loader, never measured
    assert (b >= -1e-15).all(), "more KV context never costs less"
    assert all(r["time_s"] > 0 for r in doc["rows"])
    assert cm.table.a[1:, :].min() > 0 and cm.table.a[0, 1:].min() > 0
    for r in doc["rows"]:  # two context points per grid node: the fitted line passes through both
        assert cm.iteration_time(r["prefill_tokens"], r["decode_tokens"], r["kv_context_tokens"]) == \
            pytest.approx(r["time_s"], rel=1e-6)
    spec = {"gpu": "CPU", "model": "schedgym-tiny", "max_model_len": 512, "calibration": table}
    env = gym.make("schedgym/LLMServing-v0", instance=small_workload(), cluster=[spec, spec], rate_scale=1.0,
                   engine={"num_gpu_blocks": 128})
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(int(info["action_mask"].argmax()))
        done = term or trunc
    assert env.unwrapped.validate()["p99_ttft"] == info["p99_ttft"]
    assert info["n_served"] == small_workload().n_requests


def test_fidelity_runs_live_and_sim_with_identical_routing(table: str) -> None:
    rep = fidelity(small_workload(), table, n_engines=2, num_blocks=128, device=DEVICE)
    assert rep["same_routing"]
    assert [r["metric"] for r in rep["rows"]][:3] == ["p50_ttft", "p90_ttft", "p99_ttft"]
    assert all(r["live"] > 0 and r["sim"] > 0 for r in rep["rows"])
    assert "p99_e2e" in format_report(rep)


def test_calibrate_cli_writes_a_loadable_table(tmp_path) -> None:
    out = tmp_path / "t.json"
    assert main(["calibrate", "--out", str(out), "--prefill", "0,8", "--decode", "0,2", "--context", "8",
                 "--repeats", "1", "--device", DEVICE]) == 0
    assert load_calibration_table(out).prefill.tolist() == [0.0, 8.0]
    assert main(["calibrate", "--out", str(out), "--prefill", "8,16", "--decode", "0,2"]) == 2  # no 0 in grid
