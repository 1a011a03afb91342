"""Calibration round trip: the profiler's table loads into the simulator's cost model and drives LLMServing-v0;
the fidelity command runs end to end."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
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
    assert doc["attention_pair_s"] >= 0 and "64 tokens as 1 prompt" in doc["attention_pair_from"]
    cm = TableCostModel(load_calibration_table(table))
    b = cm.table.b.copy()
    b[0, 0] = 0.0  # the (0, 0) node is extrapolated by the loader, never measured
    assert (b >= -1e-15).all(), "more KV context never costs less"
    assert all(r["time_s"] > 0 for r in doc["rows"])
    assert cm.table.a[1:, :].min() > 0 and cm.table.a[0, 1:].min() > 0
    # Two context points per grid node: the fitted line passes through both, or parallel above both where a
    # noisy node was raised to keep more work from costing less (the table's running maximum).
    shift: dict[tuple[int, int], list[float]] = {}
    for r in doc["rows"]:
        t = cm.iteration_time(r["prefill_tokens"], r["decode_tokens"], r["kv_context_tokens"])
        assert t >= r["time_s"] * (1 - 1e-6)
        shift.setdefault((r["prefill_tokens"], r["decode_tokens"]), []).append(t - r["time_s"])
    for v in shift.values():
        assert max(v) - min(v) == pytest.approx(0.0, abs=1e-9)
    assert (np.diff(cm.table.a, axis=0) >= 0).all() and (np.diff(cm.table.a, axis=1) >= 0).all()
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


def _rows(t_at_64: float) -> list[dict[str, float]]:
    """A 2x4 grid; decode-only times 1, 3 ms at 1, 32 sequences and ``t_at_64`` at 64; 1 us per KV token."""
    rows = []
    for p, extra in ((0, 0.0), (64, 2e-3)):
        for d, t in ((0, 0.0), (1, 1e-3), (32, 3e-3), (64, t_at_64)):
            if p + d == 0:
                continue
            for k in ((0,) if d == 0 else (16 * d, 256 * d)):
                rows.append({"prefill_tokens": p, "decode_tokens": d, "kv_context_tokens": k,
                             "time_s": (t if d else 1e-3) + extra + 1e-6 * k})
    return rows


def test_table_extrapolation_never_lets_more_work_cost_less() -> None:
    from schedgym.envs.serving.costmodel import calibration_from_rows
    falling = TableCostModel(calibration_from_rows(_rows(2.5e-3)))  # noisy last node: 64 faster than 32
    at64 = falling.iteration_time(0, 64, 64 * 100)
    assert at64 == pytest.approx(3e-3 + 1e-6 * 6400)  # raised to the 32-sequence node's fixed cost
    for d in (65, 128, 256, 4096):  # beyond the grid: flat (slope clamped at 0), never below the last node
        assert falling.iteration_time(0, d, 64 * 100) == pytest.approx(at64)
        alpha, beta = falling.decode_coefficients(d)
        assert alpha == pytest.approx(3e-3) and beta == pytest.approx(1e-6)
    rising = TableCostModel(calibration_from_rows(_rows(4e-3)))  # a rising edge keeps its linear extrapolation
    assert rising.decode_coefficients(128)[0] == pytest.approx(4e-3 + (4e-3 - 3e-3) * (128 - 64) / 32)
    assert rising.iteration_time(128, 0, 0) == pytest.approx(1e-3 + 2 * 2e-3)  # prefill axis extrapolates too
    steep = TableCostModel(calibration_from_rows(_rows(1e-4)))
    assert min(steep.iteration_time(0, d, 0) for d in (64, 100, 1000)) == pytest.approx(3e-3)
    assert steep.iteration_time(0, 24, 0) == pytest.approx(1e-3 + 2e-3 * 23 / 31)  # inside the grid: interpolated


def test_fit_iteration_model_recovers_terms_and_stays_non_negative() -> None:
    import numpy as np

    from schedgym.hwbackend.profiler import LIVE_TERMS, fit_iteration_model
    rng = np.random.default_rng(0)
    n = 200
    pre = rng.random(n) < 0.3
    P = np.where(pre, rng.integers(1, 300, n), 0)
    D = np.where(pre, 0, rng.integers(1, 20, n))
    K = D * rng.integers(10, 200, n)
    true = np.array([2e-3, 1.5e-3, 3e-5, 4e-5, 2e-8, 1e-8])
    from schedgym.hwbackend.profiler import _design
    t = _design(P, D, K) @ true
    np.testing.assert_allclose(fit_iteration_model(P, D, K, t), true, rtol=1e-6, atol=1e-12)
    # KV reads that seem to make decodes faster (noise) get a zero coefficient, not a negative one.
    t2 = t - 1e-6 * K + 1e-3
    c = fit_iteration_model(P, D, K, t2)
    assert (c >= 0).all() and c[LIVE_TERMS.index("per_kv_token_s")] == 0.0
    with pytest.raises(ValueError, match="positive times"):
        fit_iteration_model(P[:3], D[:3], K[:3], t[:3])


def test_calibrate_from_a_live_run_round_trips_with_its_dispatch_latency(tmp_path) -> None:
    from schedgym.hwbackend.profiler import calibrate_live
    doc = calibrate_live(small_workload(), n_engines=2, num_blocks=128, device=DEVICE, prefill=(0, 16, 64),
                         decode=(0, 1, 4, 16), context=(16, 128))
    assert doc["schema"] == CALIBRATION_SCHEMA and all(r["fit"] for r in doc["rows"])
    assert 0 < doc["dispatch_latency_s"] < 1.0 and "small" in doc["source"]
    path = str(write_table(doc, tmp_path / "live.json"))
    cm = TableCostModel(load_calibration_table(path))
    c = doc["coefficients"]
    expect = doc["loop_gap_s"] + c["prefill_group_s"] + 64 * c["per_prefill_token_s"] + \
        64 * 65 / 2 * c["per_attention_pair_s"]
    assert cm.iteration_time(64, 0, 0) == pytest.approx(expect, rel=1e-9)
    assert cm.pair_s == doc["attention_pair_s"] == c["per_attention_pair_s"]
    rep = fidelity(small_workload(), path, n_engines=2, num_blocks=128, device=DEVICE)
    assert rep["dispatch_latency_source"].startswith("calibration table")
    assert rep["dispatch_latency_model_ms"] == pytest.approx((doc["dispatch_latency_s"] + doc["wake_latency_s"]) * 1e3)
    assert 0 <= doc["wake_latency_s"] < 1.0 and 0 <= doc["loop_gap_s"] < 1e-3
    assert set(rep["iterations"]) <= {"prefill", "decode", "mixed", "cpu_share"}
    assert rep["iterations"]["decode"]["n"] > 0
    assert 0 < rep["iterations"]["cpu_share"]["value"] <= 1.05
    # The measured variability: slowdown by other busy engines, iteration-time and latency distributions.
    for kind in ("prefill", "decode"):
        s = doc["interference"][kind]
        assert s[0] == 1.0 and len(s) == 2 and s[1] >= 1.0
    svc = np.array(doc["dispatch_service_quantiles"])  # the router's own time per request, queueing taken out
    assert svc.size == 101 and svc[0] >= 0 and svc[50] <= np.array(doc["dispatch_latency_quantiles"])[50]
    q = np.array(doc["iteration_ratio_quantiles"])
    assert q.size == 101 and (np.diff(q) >= 0).all() and q[0] > 0
    assert cm.interference.tolist() == [doc["interference"]["prefill"], doc["interference"]["decode"]]
    assert cm.ratio_quantiles.tolist() == q.tolist()
    assert cm.ratio_quantiles_by_overlap.shape == (2, 2, 101)  # kind x other engines computing x quantiles
    assert "interference" in rep["prediction"] and len(rep["rows_mean_model"]) == len(rep["rows"]) == 9
    # The host-speed probe: a scaled copy of the table drives the simulator.
    rep = fidelity(small_workload(), path, n_engines=2, num_blocks=128, device=DEVICE, noise_runs=2,
                   drift_dir=str(tmp_path))
    scaled = json.loads((tmp_path / "live.drift.json").read_text())
    f = rep["host_drift"]
    before, after = rep["host_probes"]  # the host timed just before and just after the compared run
    assert f == pytest.approx(np.sqrt(before * after)) and scaled["drift_factor"] == f
    assert rep["run_speed"] > 0 and len(rep["rows_run_speed"]) == 9  # the diagnostic at the run's own speed
    assert [r["time_s"] for r in scaled["rows"]] == pytest.approx([r["time_s"] * f for r in doc["rows"]])


def test_attention_pairs_correct_a_batch_of_shorter_prompts() -> None:
    """Rows time one prompt of P tokens; P tokens as several prompts have fewer attention pairs, so cost less."""
    from schedgym.envs.serving.costmodel import calibration_from_rows
    rows = _rows(4e-3)
    rows = [{**r, "time_s": r["time_s"] + 1e-7 * r["prefill_tokens"] * (r["prefill_tokens"] + 1) / 2} for r in rows]
    plain = TableCostModel(calibration_from_rows(rows))
    cm = TableCostModel(calibration_from_rows(rows, meta={"attention_pair_s": 1e-7}))
    one = 64 * 65 / 2
    four = 4 * 16 * 17 / 2
    assert cm.iteration_time(64, 0, 0) == plain.iteration_time(64, 0, 0)  # no pairs given: the table as is
    assert cm.iteration_time(64, 0, 0, prefill_attention_pairs=one) == pytest.approx(plain.iteration_time(64, 0, 0))
    assert cm.iteration_time(64, 0, 0, prefill_attention_pairs=four) == \
        pytest.approx(plain.iteration_time(64, 0, 0) - 1e-7 * (one - four))
    # A chunk after cached context has more pairs than a fresh prompt: it costs more.
    assert cm.iteration_time(64, 0, 0, prefill_context_tokens=100, prefill_attention_pairs=64 * (100 + 32.5)) > \
        plain.iteration_time(64, 0, 0, prefill_context_tokens=100)
    # Never below the fastest measured iteration, whatever the pair count.
    assert cm.iteration_time(64, 0, 0, prefill_attention_pairs=0.0) >= cm._floor
    with pytest.raises(ValueError, match="attention_pair_s must be a finite number >= 0"):
        TableCostModel(calibration_from_rows(rows, meta={"attention_pair_s": -1.0}))


def test_small_prefills_below_the_first_grid_node_keep_the_fixed_cost() -> None:
    from schedgym.envs.serving.costmodel import calibration_from_rows
    rows = [r for r in _rows(4e-3) if r["prefill_tokens"] in (0, 64)]
    cm = TableCostModel(calibration_from_rows(rows))
    at64 = cm.iteration_time(64, 0, 0)
    assert cm.table.a[0, 0] == pytest.approx(min(cm.table.a[1, 0], cm.table.a[0, 1]))
    for p in (1, 3, 32):  # between "no work" and the first prefill node: never cheaper than the cheapest node
        assert cm.table.a[0, 0] <= cm.iteration_time(p, 0, 0) <= at64


def _gpu_like_table(path) -> str:
    """Shaped like the H100 1b grid: launch-bound (26 ms) up to 1024 prompt tokens, then quadratic attention
    (58 ms at 2048, 190 ms at 4000), decode 25 ms; 1.25e-8 s per attention pair (as measured there)."""
    pre = {0: 0.0, 1: 0.026, 64: 0.026, 256: 0.027, 1024: 0.027, 2048: 0.0585, 4000: 0.19}
    rows = []
    for p, tp in pre.items():
        for d in (0, 1, 4, 16, 64):
            if p + d == 0:
                continue
            for c in ((0,) if d == 0 else (128, 1024)):
                rows.append({"prefill_tokens": p, "decode_tokens": d, "kv_context_tokens": d * c,
                             "time_s": max(tp, 0.025) + (0.01 if p and d else 0.0) + 1e-8 * d * c})
    doc = {"schema": CALIBRATION_SCHEMA, "gpu": "H100-80GB", "model": "schedgym-1b", "tp": 1,
           "attention_pair_s": 1.25e-8, "rows": rows}
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_batch_is_never_faster_than_prefilling_one_of_its_prompts_alone(tmp_path) -> None:
    """The validator's TTFT bound under the attention-pair correction (it failed on the H100 1b table)."""
    import numpy as np
    cm = TableCostModel(load_calibration_table(_gpu_like_table(tmp_path / "t.json")))
    rng = np.random.default_rng(0)
    for _ in range(300):
        prompts = rng.integers(1, 2500, rng.integers(1, 6))
        pairs = float(sum(p * (p + 1) / 2 for p in prompts))
        t = cm.iteration_time(int(prompts.sum()), 0, 0, prefill_attention_pairs=pairs)
        assert t >= max(cm.prefill_time(int(p)) for p in prompts) * (1 - 1e-12)
        assert t <= cm.iteration_time(int(prompts.sum()), 0, 0) * (1 + 1e-12)  # the correction only lowers
    many = cm.iteration_time(4000, 0, 0, prefill_attention_pairs=8 * 500 * 501 / 2)  # still corrects big batches
    assert many == pytest.approx(0.19 - 1.25e-8 * (4000 * 4001 / 2 - 8 * 500 * 501 / 2))


def test_simulated_episode_with_the_pair_correction_validates(tmp_path) -> None:
    """Bursts of 1-2k-token prompts batch together in the simulator; the independent validator accepts it."""
    import numpy as np

    from schedgym.envs.serving.types import ServingWorkload
    table = _gpu_like_table(tmp_path / "t.json")
    rng = np.random.default_rng(1)
    n = 48
    w = ServingWorkload("bursts", np.sort(rng.uniform(0, 0.6, n)), rng.integers(200, 2200, n),
                        rng.integers(5, 40, n))
    spec = {"gpu": "H100-80GB", "model": "schedgym-1b", "max_model_len": 4096, "calibration": table}
    env = gym.make("schedgym/LLMServing-v0", instance=w, cluster=[spec], rate_scale=1.0,
                   engine={"num_gpu_blocks": 4096}, segment_requests=None)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(int(info["action_mask"].argmax()))
        done = term or trunc
    sched = env.unwrapped.schedule()
    assert (sched.seg_prefill_tokens > 2500).any(), "the workload should batch several prompts"
    assert env.unwrapped.validate()["n_served"] == n


def test_h100_1b_table_replay_validates() -> None:
    """Regression: the table ``scripts/gpu_check.sh`` measured for the 1b model on an H100 (lead's run 3, kept in
    tests/data) made the simulator prefill request 28 of Azure conv 64-127 faster than its own prefill time."""
    from pathlib import Path

    from schedgym.hwbackend.fidelity import round_robin, segment
    table = str(Path(__file__).parent / "data" / "h100_1b_grid_calibration.json")
    w = segment("azure-conv-2023", 64, 64, 8.0, 1.0)
    spec = {"gpu": "H100-80GB", "model": "schedgym-1b", "max_model_len": 4096, "calibration": table}
    env = gym.make("schedgym/LLMServing-v0", instance=w, rate_scale=1.0, cluster=[spec],
                   engine={"num_gpu_blocks": 4096}, segment_requests=None)
    round_robin(env)
    checked = env.unwrapped.validate()
    assert checked["n_served"] + checked["n_rejected"] == w.n_requests and checked["n_served"] >= 60
