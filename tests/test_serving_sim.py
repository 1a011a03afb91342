"""LLMServing simulator: the closed-form skip-ahead against an iteration-by-iteration reference, the engine's
published behaviours (preemption, chunked prefill), the mid-run observation, and the independent validator
catching corrupted event logs."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from schedgym.envs.serving.cluster import check_cluster, cost_models
from schedgym.envs.serving.generator import synthetic_workload
from schedgym.envs.serving.io import load_sharegpt
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import ClusterSpec, EngineConfig, ServingWorkload
from schedgym.envs.serving.validator import ScheduleError, validate_schedule


def run_sim(w: ServingWorkload, cluster: ClusterSpec, route=None) -> ClusterSim:
    sim = ClusterSim.build(w, cluster)
    n = len(sim.engines)
    k = 0
    while (r := sim.next_decision()) is not None:
        i = route(sim, r) if route else k % n
        while not sim.feasible[r, i]:
            i = (i + 1) % n
        sim.route(r, i)
        k += 1
    sim.drain()
    return sim


def reference_engine(w: ServingWorkload, cost, blocks: int, cfg: EngineConfig, max_tokens: int):
    """vLLM v0 on one instance, one iteration at a time, no skip-ahead (recompute preemption, no chunking)."""
    bs, R = cfg.block_size, w.n_requests
    watermark = int(cfg.watermark * blocks)
    arrival, prompt, out = w.arrival.tolist(), w.prompt_tokens.tolist(), w.output_tokens.tolist()
    gen = [0] * R
    first, finish = [math.nan] * R, [math.nan] * R
    waiting: deque[int] = deque()
    running: list[int] = []
    free, t, nxt, preemptions = blocks, 0.0, 0, 0
    while nxt < R or waiting or running:
        while nxt < R and arrival[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if not waiting and not running:
            t = arrival[nxt]
            continue
        admitted, tokens = [], 0
        while waiting and len(running) + len(admitted) < cfg.max_num_seqs:
            r = waiting[0]
            need = -(-(prompt[r] + gen[r]) // bs)
            if free - need < watermark or tokens + prompt[r] + gen[r] > max_tokens:
                break
            waiting.popleft()
            free -= need
            admitted.append(r)
            tokens += prompt[r] + gen[r]
        if admitted:
            pairs = sum((prompt[r] + gen[r]) * (prompt[r] + gen[r] + 1) / 2 for r in admitted)
            t += cost.iteration_time(tokens, 0, 0, prefill_attention_pairs=pairs)
            for r in admitted:
                gen[r] += 1
                first[r] = t if math.isnan(first[r]) else first[r]
                if gen[r] == out[r]:
                    finish[r] = t
                    free += -(-(prompt[r] + gen[r] - 1) // bs)
                else:
                    running.append(r)
            continue
        # Decode: every running sequence appends its last token; new blocks where it crosses a block edge.
        while sum((prompt[r] + gen[r] - 1) % bs == 0 for r in running) > free:
            r = running.pop()
            free += -(-(prompt[r] + gen[r] - 1) // bs)
            waiting.appendleft(r)
            preemptions += 1
        free -= sum((prompt[r] + gen[r] - 1) % bs == 0 for r in running)
        S = sum(prompt[r] + gen[r] for r in running)
        t += cost.iteration_time(0, len(running), S)
        for r in list(running):
            gen[r] += 1
            if gen[r] == out[r]:
                finish[r] = t
                running.remove(r)
                free += -(-(prompt[r] + gen[r] - 1) // bs)
    return np.array(first), np.array(finish), preemptions


@pytest.mark.parametrize("blocks,rate", [(None, 3.0), (300, 6.0), (120, 4.0)])
def test_skip_ahead_matches_iteration_by_iteration_reference(blocks, rate):
    """The event-driven engine with closed-form decode runs reproduces a naive per-iteration engine."""
    p, o = load_sharegpt()
    p, o = p[:3000] // 4 + 1, o[:3000] // 4 + 1
    fits = p + o <= 1500  # every request fits even the smallest cache here (the reference has no rejection)
    w = synthetic_workload(np.random.default_rng(7), p[fits], o[fits], 150, rate)
    cluster = ClusterSpec(("A100-80GB/Llama-3-8B",), EngineConfig(num_gpu_blocks=blocks))
    sim = run_sim(w, cluster)
    cost = cost_models(cluster)[0]
    plan = check_cluster(cluster)[0]
    first, finish, pre = reference_engine(w, cost, plan.num_blocks, cluster.engine, 8192)
    np.testing.assert_allclose(sim.first_token, first, rtol=1e-9)
    np.testing.assert_allclose(sim.finish, finish, rtol=1e-9)
    assert sum(sim.preemptions) == pre
    if blocks == 120:
        assert pre > 0, "the small cache should force preemptions"
    validate_schedule(w, sim.schedule())


def single_request(p: int, o: int) -> ServingWorkload:
    return ServingWorkload("one", np.array([0.0]), np.array([p]), np.array([o]))


def test_single_request_latency_is_prefill_plus_decode_iterations():
    cluster = ClusterSpec(("H100-80GB/Llama-3-8B",))
    sim = run_sim(single_request(1000, 50), cluster)
    cost = cost_models(cluster)[0]
    ttft = cost.prefill_time(1000)
    assert sim.first_token[0] == pytest.approx(ttft, rel=1e-12)
    a, b = cost.decode_coefficients(1)
    decode = sum(a + b * (1000 + j + 1) for j in range(49))
    assert sim.finish[0] == pytest.approx(ttft + decode, rel=1e-9)
    assert sim.gen[0] == 50


def test_decode_coefficients_are_exactly_the_decode_iteration_time():
    cost = cost_models(ClusterSpec(("A100-80GB/Llama-3-70B/tp4",)))[0]
    for B in (1, 7, 64):
        a, b = cost.decode_coefficients(B)
        for S in (B * 10, B * 3000):
            assert cost.iteration_time(0, B, S) == pytest.approx(a + b * S, rel=1e-12)


def loaded_workload(n: int = 400, rate: float = 40.0, seed: int = 3) -> ServingWorkload:
    p, o = load_sharegpt()
    return synthetic_workload(np.random.default_rng(seed), p, o, n, rate)


def test_undersized_kv_cache_preempts_and_ample_cache_does_not():
    w = loaded_workload(300, 20.0)
    big = run_sim(w, ClusterSpec(("H100-80GB/Llama-3-8B",) * 2))
    small = run_sim(w, ClusterSpec(("H100-80GB/Llama-3-8B",) * 2, EngineConfig(gpu_memory_utilization=0.25)))
    assert sum(big.preemptions) == 0
    assert sum(small.preemptions) > 0
    for sim in (big, small):
        validate_schedule(w, sim.schedule())


@pytest.mark.parametrize("preemption", ["recompute", "swap"])
def test_preemption_modes_validate_and_swap_moves_kv_over_pcie(preemption):
    w = loaded_workload(200, 20.0)
    cl = ClusterSpec(("A100-80GB/Llama-3-8B",), EngineConfig(num_gpu_blocks=1500, preemption=preemption))
    sim = run_sim(w, cl)
    s = sim.schedule()
    kinds = set(s.res_end_kind.tolist())
    assert (2 in kinds) == (preemption == "swap")  # END_SWAP_OUT
    assert (1 in kinds) == (preemption == "recompute")
    validate_schedule(w, s)


def test_chunked_prefill_lowers_tail_tpot():
    w = loaded_workload(400, 14.0, seed=5)
    base = run_sim(w, ClusterSpec(("H100-80GB/Llama-3-8B",) * 2))
    chunk = run_sim(w, ClusterSpec(("H100-80GB/Llama-3-8B",) * 2, EngineConfig(chunked_prefill=True)))

    def p99_tpot(sim: ClusterSim) -> float:
        f, ft, o = np.array(sim.finish), np.array(sim.first_token), w.output_tokens
        m = o > 1
        return float(np.percentile((f - ft)[m] / (o[m] - 1), 99))

    assert p99_tpot(chunk) < p99_tpot(base)
    s = chunk.schedule()
    assert (s.seg_decode & (s.seg_prefill_tokens > 0)).any(), "chunked prefill mixes prefill and decode"
    assert s.seg_prefill_tokens.max() <= 512
    validate_schedule(w, s)


def test_mid_run_observation_matches_kv_recomputed_from_the_log():
    """Blocks reported at an arbitrary time inside a decode run equal the blocks recomputed from the log."""
    w = loaded_workload(200, 4.0)
    cl = ClusterSpec(("A100-80GB/Llama-3-8B",))
    sim = ClusterSim.build(w, cl)
    checked = 0
    while (r := sim.next_decision()) is not None:
        stats = sim.live_stats()
        e = sim.engines[0]
        if e.state == 1 and e.B > 0:  # inside a decode run
            k = e.iters_done(sim.now)
            expect = e.total_blocks - e.free
            for q in e.running:
                kv = sim.prompt[q] + sim.gen[q] + (e.D - sim.dbase[q]) - 1 + min(k + 1, e.k_end)
                expect += -(-kv // 16) - (-(-(sim.prompt[q] + sim.gen[q] + (e.D - sim.dbase[q]) - 1) // 16))
            assert stats[0, 3] == expect
            assert stats[0, 1] == len(e.running) + len(e.prefilling)
            checked += 1
        sim.route(r, 0)
    sim.drain()
    assert checked > 50


def _schedule_and_workload():
    w = loaded_workload(80, 10.0)
    sim = run_sim(w, ClusterSpec(("A100-80GB/Llama-3-8B",), EngineConfig(num_gpu_blocks=900)))
    return w, sim.schedule()


def test_validator_accepts_the_real_log_and_recomputes_p99_ttft():
    w, s = _schedule_and_workload()
    out = validate_schedule(w, s)
    first = np.full(w.n_requests, np.inf)
    np.minimum.at(first, s.res_request, s.res_start)
    assert out["p99_ttft"] == pytest.approx(np.percentile(first - w.arrival, 99))
    assert 0 < out["peak_kv_fraction"] <= 1.0


@pytest.mark.parametrize("corruption,match", [
    ("drop_decode_segment", "produced"),
    ("fewer_blocks", "KV blocks"),
    ("early_first_token", "prefill time|below"),
    ("reject_feasible", "rejected"),
    ("overlap_segments", "before the previous ends"),
    ("alloc_before_arrival", "before it arrived"),
])
def test_validator_catches_corrupted_logs(corruption, match):
    w, s = _schedule_and_workload()
    if corruption == "drop_decode_segment":
        j = int(np.flatnonzero(s.seg_decode & (s.seg_iters > 3))[0])
        s = replace(s, seg_iters=np.where(np.arange(s.seg_iters.size) == j, s.seg_iters - 1, s.seg_iters))
    elif corruption == "fewer_blocks":  # the log claims a smaller cache than it used
        s = replace(s, cluster=replace(s.cluster, engine=replace(s.cluster.engine, num_gpu_blocks=700)))
    elif corruption == "early_first_token":  # the log claims an engine too slow for the TTFTs it shows
        s = replace(s, cluster=replace(s.cluster, engine=replace(s.cluster.engine, iteration_overhead_s=5.0)))
    elif corruption == "reject_feasible":
        keep = s.res_request != 7
        inst = s.instance.copy()
        inst[7] = -1
        s = replace(s, instance=inst, **{f: getattr(s, f)[keep] for f in (
            "res_request", "res_alloc", "res_start", "res_end", "res_kv_start", "res_cached", "res_start_kind",
            "res_end_kind")})
    elif corruption == "overlap_segments":
        start = s.seg_start.copy()
        start[10] = s.seg_start[9] + 1e-9
        s = replace(s, seg_start=start)
    elif corruption == "alloc_before_arrival":
        alloc = s.res_alloc.copy()
        r0 = int(np.flatnonzero(s.res_request == 20)[0])
        alloc[r0] = w.arrival[20] - 1.0
        s = replace(s, res_alloc=alloc)
    with pytest.raises(ScheduleError, match=match):
        validate_schedule(w, s)


def test_rejects_requests_no_instance_can_hold_and_routes_the_rest():
    w = ServingWorkload("mix", np.array([0.0, 0.1, 0.2]), np.array([100, 5000, 200]), np.array([10, 10, 10]))
    sim = run_sim(w, ClusterSpec(("A100-80GB/Llama-2-7B",)))  # 4096-token context
    assert sim.rejected == [1]
    out = validate_schedule(w, sim.schedule())
    assert out["n_rejected"] == 1 and out["n_served"] == 2
    assert out["slo_attainment"] <= 2 / 3


def test_prefix_caching_reuses_shared_prompt_blocks():
    hashes = np.array([1, 2, 3, 1, 2, 4, 1, 2, 3], np.int64)
    w = ServingWorkload("pfx", np.array([0.0, 5.0, 10.0]), np.array([1536, 1536, 1536]), np.array([5, 5, 5]),
                        prefix_hashes=hashes, prefix_offsets=np.array([0, 3, 6, 9]))
    on = run_sim(w, ClusterSpec(("H100-80GB/Llama-3.1-8B",), EngineConfig(prefix_caching=True)))
    off = run_sim(w, ClusterSpec(("H100-80GB/Llama-3.1-8B",)))
    s = on.schedule()
    assert s.res_cached.tolist() == [0, 1024, 1535]  # 2 shared blocks, then all 3 (capped at prompt - 1)
    ttft_on = np.array(on.first_token) - w.arrival
    ttft_off = np.array(off.first_token) - w.arrival
    assert ttft_on[0] == pytest.approx(ttft_off[0])
    assert ttft_on[1] < ttft_off[1] and ttft_on[2] < ttft_on[1]
    validate_schedule(w, s)


@pytest.mark.parametrize("instances,engine,rate", [
    # Found by fuzzing: a swap-in must leave room for the next decode's new blocks (its own included).
    (("A100-80GB/Llama-3-70B/tp4",), dict(chunked_prefill=True, preemption="swap", num_gpu_blocks=300,
                                          max_num_seqs=16, swap_space_gb=0.01, block_size=8,
                                          max_num_batched_tokens=256), 10.0),
    (("L4/Llama-3-8B/tp1/len4096", "H100-80GB/Llama-3.1-8B"), dict(preemption="swap", num_gpu_blocks=700,
                                                                   max_num_seqs=4, prefix_caching=True), 2.0),
    (("A10G/Llama-2-7B",) * 2, dict(chunked_prefill=True, block_size=32, num_gpu_blocks=300,
                                    prefix_caching=True), 0.5),
])
def test_stress_configurations_validate(instances, engine, rate):
    from schedgym.envs.serving.io import load_trace

    w = load_trace("mooncake-synthetic").slice(1500, 1596).scaled(rate)
    rng = np.random.default_rng(0)
    sim = run_sim(w, ClusterSpec(instances, EngineConfig(**engine)),
                  route=lambda s, r: int(rng.choice(np.flatnonzero(s.feasible[r]))))
    out = validate_schedule(w, sim.schedule())
    assert out["n_served"] + out["n_rejected"] == w.n_requests
