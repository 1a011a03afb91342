"""Measured iteration-time variability in the simulator (``variability.py``): interference between engines and
seeded per-iteration jitter from a live-fitted calibration table; the profiler's estimators of both."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from helpers import table_rows

import schedgym  # noqa: F401
from schedgym.envs.serving import catalog
from schedgym.envs.serving.costmodel import RooflineCostModel
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import ClusterSpec, ServingWorkload
from schedgym.envs.serving.validator import validate_schedule
from schedgym.envs.serving.variability import router_dispatch_times, router_service_times
from schedgym.hwbackend.profiler import _interference, overlap_fractions

COST = RooflineCostModel(catalog.gpu("H100-80GB"), catalog.model("Llama-3-8B"))


def _table(tmp_path, name: str = "cal.json", **extra) -> str:
    rows = table_rows(COST)
    path = tmp_path / name
    path.write_text(json.dumps({"schema": "schedgym.calibration/v1", "gpu": "H100-80GB", "model": "Llama-3-8B",
                                "tp": 1, "rows": rows, **extra}))
    return str(path)


def _run(w: ServingWorkload, cluster: ClusterSpec, route: list[int], seed: int = 0) -> ClusterSim:
    sim = ClusterSim.build(w, cluster, noise_seed=seed)
    while (r := sim.next_decision()) is not None:
        sim.route(r, route[r])
    sim.drain()
    validate_schedule(w, sim.schedule())
    return sim


def _cluster(path: str, n: int, **kw) -> ClusterSpec:
    return ClusterSpec(({"gpu": "H100-80GB", "model": "Llama-3-8B", "calibration": path},) * n, **kw)


def test_interference_slows_engines_only_while_others_compute(tmp_path):
    path = _table(tmp_path, interference=[1.0, 2.0])
    w = ServingWorkload("pair", np.array([0.0, 0.0]), np.array([512, 512]), np.array([200, 200]))
    alone = _run(w, _cluster(path, 2), [0, 1])
    slowed = _run(w, _cluster(path, 2, interference=True), [0, 1])
    # Identical requests on two engines at once: every iteration runs with the other engine busy, twice as long.
    assert slowed.finish[0] == pytest.approx(2 * alone.finish[0], rel=1e-9)
    assert slowed.first_token[1] == pytest.approx(2 * alone.first_token[1], rel=1e-9)
    # A request alone in the cluster is not slowed; one that outlives its neighbour speeds up when it leaves.
    one = ServingWorkload("one", np.array([0.0]), np.array([512]), np.array([200]))
    assert _run(one, _cluster(path, 2, interference=True), [0]).finish[0] == _run(one, _cluster(path, 2), [0]).finish[0]
    w2 = ServingWorkload("short-long", np.array([0.0, 0.0]), np.array([512, 512]), np.array([50, 200]))
    base, mixed = _run(w2, _cluster(path, 2), [0, 1]), _run(w2, _cluster(path, 2, interference=True), [0, 1])
    assert mixed.finish[0] == pytest.approx(2 * base.finish[0], rel=1e-9)
    assert base.finish[1] < mixed.finish[1] < 2 * base.finish[1]


def test_iteration_noise_is_seeded_and_scales_as_its_quantiles(tmp_path):
    w = ServingWorkload("w", np.array([0.0, 0.01, 0.02, 0.5]), np.array([300, 900, 40, 2000]),
                        np.array([80, 20, 150, 60]))
    route = [0, 1, 0, 1]
    flat = _table(tmp_path, "flat.json", iteration_ratio_quantiles=[1.5, 1.5], interference=[1.0, 1.0])
    slower = ServingWorkload("w", w.arrival * 1.5, w.prompt_tokens, w.output_tokens)
    base, scaled = _run(w, _cluster(flat, 2), route), _run(slower, _cluster(flat, 2, iteration_noise=True), route)
    # A degenerate distribution (every draw 1.5) stretches every iteration by exactly 1.5: with arrivals
    # stretched alike, the whole schedule is the same one 1.5 times slower.
    np.testing.assert_allclose(scaled.finish, 1.5 * np.array(base.finish), rtol=1e-9)
    spread = _table(tmp_path, "spread.json", iteration_ratio_quantiles=[0.8, 1.0, 1.2, 6.0])
    cl = _cluster(spread, 2, iteration_noise=True)
    a, b, c = (_run(w, cl, route, seed) for seed in (3, 3, 4))
    assert a.finish == b.finish and a.first_token == b.first_token and a.seg_log == b.seg_log
    assert a.finish != c.finish
    # Through the env: the episode seed seeds the draws.
    env = gym.make("schedgym/LLMServing-v0", instance=w, rate_scale=1.0, cluster=[{"gpu": "H100-80GB",
                   "model": "Llama-3-8B", "calibration": spread}] * 2, iteration_noise=True)
    finishes = []
    for seed in (5, 5, 6):
        env.reset(seed=seed)
        done = False
        while not done:
            *_, term, trunc, info = env.step(0)
            done = term or trunc
        assert env.unwrapped.validate()["p99_ttft"] == info["p99_ttft"]
        finishes.append(list(env.unwrapped.state.finish))
    assert finishes[0] == finishes[1] != finishes[2]
    # A measured wake latency delays an idle engine's start on an arriving request (not a busy engine's).
    woken = _table(tmp_path, "wake.json", iteration_ratio_quantiles=[1.0, 1.0], wake_latency_quantiles=[0.5, 0.5])
    one = ServingWorkload("one", np.array([0.0]), np.array([512]), np.array([3]))
    base, late = _run(one, _cluster(woken, 1), [0]), _run(one, _cluster(woken, 1, iteration_noise=True), [0])
    assert late.first_token[0] == pytest.approx(base.first_token[0] + 0.5, rel=1e-12)
    two = ServingWorkload("two", np.array([0.0, 0.001]), np.array([512, 64]), np.array([3, 3]))
    base, late = _run(two, _cluster(woken, 1), [0, 0]), _run(two, _cluster(woken, 1, iteration_noise=True), [0, 0])
    assert base.first_token[1] > base.first_token[0]  # awake: the second waits for the first's prefill
    assert late.first_token[1] == late.first_token[0] > 0.5  # asleep: both are prefilled at the wake-up


def test_both_options_draw_from_the_distribution_of_the_iterations_overlap_class(tmp_path):
    by = {"prefill": [[1.0, 1.0], [3.0, 3.0]], "decode": [[1.0, 1.0], [3.0, 3.0]]}
    path = _table(tmp_path, interference=[1.0, 2.0], iteration_ratio_quantiles=[1.0, 1.0],
                  iteration_ratio_quantiles_by_overlap=by)
    w = ServingWorkload("pair", np.array([0.0, 0.0]), np.array([512, 512]), np.array([200, 200]))
    alone = _run(w, _cluster(path, 2), [0, 1])
    both = _run(w, _cluster(path, 2, interference=True, iteration_noise=True), [0, 1])
    # The class's 3x, not the slowdown's 2x (engine 0's first prefill started alone, re-timed by the slowdown).
    assert both.finish[0] == pytest.approx(3 * alone.finish[0], rel=0.01)
    assert both.finish[1] == pytest.approx(3 * alone.finish[1], rel=1e-9)
    bad = _table(tmp_path, "bad.json", iteration_ratio_quantiles=[1.0, 1.0],
                 iteration_ratio_quantiles_by_overlap={"prefill": [[1.0, 1.0]], "decode": [[1.0, 1.0], [2.0, 2.0]]})
    with pytest.raises(ValueError, match="iteration_ratio_quantiles_by_overlap must be"):
        ClusterSim.build(w, _cluster(bad, 2))


def test_variability_options_need_a_live_fitted_table(tmp_path):
    w = ServingWorkload("w", np.array([0.0]), np.array([10]), np.array([5]))
    with pytest.raises(ValueError, match=r"iteration_noise=True needs .*iteration_ratio_quantiles.* instance 0"):
        ClusterSim.build(w, ClusterSpec(("H100-80GB/Llama-3-8B",), iteration_noise=True))
    with pytest.raises(ValueError, match=r"interference=True needs .*interference.* instance 0"):
        ClusterSim.build(w, _cluster(_table(tmp_path), 1, interference=True))
    with pytest.raises(ValueError, match="iteration_noise must be True or False"):
        ClusterSpec(("H100-80GB/Llama-3-8B",), iteration_noise="yes")
    for bad, match in (({"iteration_ratio_quantiles": [1.0]}, "at least 2 non-decreasing"),
                       ({"iteration_ratio_quantiles": [2.0, 1.0]}, "at least 2 non-decreasing"),
                       ({"iteration_ratio_quantiles": [0.0, 1.0]}, "finite numbers > 0"),
                       ({"interference": [2.0, 3.0]}, r"interference must be a list \[1, s_1")):
        path = _table(tmp_path, "bad.json", **bad)
        with pytest.raises(ValueError, match=match):
            ClusterSim.build(w, _cluster(path, 1))


def test_profiler_measures_overlap_and_the_slowdown_as_ratios_of_sums():
    # Engine 0 iterates on [0, 1], [1, 2], [2, 3]; engine 1 on [0.5, 1.5] only.
    inst = np.array([0, 0, 0, 1])
    seg = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [0.5, 1.5]])
    frac = overlap_fractions(inst, seg, 2)
    np.testing.assert_allclose(frac, [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    # Decoding iterations: 10 alone at 1.1x the table, 10 half overlapped and 10 fully overlapped, progressing
    # half as fast while overlapped (2.2x the table); prefill-only: alone 1.0x, overlapped 1.5x.
    f_dec = np.r_[np.tile([1.0, 0.0], (10, 1)), np.tile([0.5, 0.5], (10, 1)), np.tile([0.0, 1.0], (10, 1))]
    p_dec = np.r_[np.full(10, 1.1), np.full(10, 1 / (0.5 / 1.1 + 0.5 / 2.2)), np.full(10, 2.2)]
    f_pre = np.r_[np.tile([1.0, 0.0], (10, 1)), np.tile([0.0, 1.0], (10, 1))]
    p_pre = np.r_[np.full(10, 1.0), np.full(10, 1.5)]
    frac = np.r_[f_dec, f_pre]
    period = np.r_[p_dec, p_pre]
    decode = np.r_[np.ones(30, bool), np.zeros(20, bool)]
    slow = _interference(period, np.ones(50), frac, decode)
    assert slow["decode"] == pytest.approx([1.0, 2.0]) and slow["prefill"] == pytest.approx([1.0, 1.5])
    # Three engines: two others never seen: the previous count's value; too few prefill-only iterations
    # overlapped (3 < 5 iterations' worth): the decoding iterations' value.
    frac3 = np.c_[np.r_[f_dec, np.tile([1.0, 0.0], (10, 1)), np.tile([0.0, 1.0], (3, 1))], np.zeros(43)]
    period3 = np.r_[p_dec, np.full(10, 1.0), np.full(3, 9.0)]
    notes: list[str] = []
    slow3 = _interference(period3, np.ones(43), frac3, np.r_[np.ones(30, bool), np.zeros(13, bool)], notes=notes)
    assert slow3["decode"] == pytest.approx([1.0, 2.0, 2.0]) and slow3["prefill"] == pytest.approx([1.0, 2.0, 2.0])
    # Every substitution is reported: prefill with 1 other (3.0 iterations' worth), both kinds with 2 (none).
    assert len(notes) == 3 and notes[0].startswith("prefill iterations with 1 other engine(s) computing: 3.0 ")
    assert "took the decode iterations' slowdown x2.00" in notes[0]
    assert "took the previous count's slowdown x2.00" in notes[1]


def test_router_service_times_take_out_the_queueing_and_replay_it() -> None:
    """Hand-computed: request 1 arrives at 1 s while the router still serves request 0 (done 0.5 s: idle), request 2
    arrives at 1.5 s and waits for request 1 (dispatched 2.0 s); request 3 is rejected (never dispatched)."""
    arrival = np.array([0.0, 1.0, 1.5, 4.0, 5.0])
    dispatched = np.array([0.5, 2.0, 2.2, np.nan, 5.3])
    service = router_service_times(arrival, dispatched)
    assert service == pytest.approx([0.5, 1.0, 0.2, 0.3])
    # Replaying the queue with those service times gives the measured dispatch times back.
    served = ~np.isnan(dispatched)
    assert router_dispatch_times(arrival[served], service) == pytest.approx(dispatched[served])
    # A burst: three requests at once are served one after another.
    assert router_dispatch_times(np.zeros(3), np.full(3, 0.1)) == pytest.approx([0.1, 0.2, 0.3])
