"""Prefix caching in the live engine (tiny model, CPU): exact reuse, block conservation, LRU eviction, the live
log validating, and Mooncake's prefix structure surviving ``scale_tokens``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests_live_helpers import DEVICE

from schedgym.envs.serving.types import END_FINISH, ServingWorkload
from schedgym.hwbackend.engine import LiveEngine

torch.set_num_threads(1)
BT = 16  # tokens per prefix-block hash; the engine's KV block size is 8 here (2 KV blocks per hash block)


def engine(num_blocks: int = 64, **kw: object) -> LiveEngine:
    cfg = {"block_size": 8, "prefix_caching": True, "max_num_batched_tokens": 256, **kw}
    return LiveEngine("tiny", cfg, num_blocks, context_limit=256, device=DEVICE, prefix_block_tokens=BT)


def serve(eng: LiveEngine, reqs: list[tuple[int, int, int, list[int]]], check: bool = True) -> dict[int, list[int]]:
    """Submit (rid, prompt, output, hashes) all at once, run to idle (checking block conservation after every
    iteration), return each request's generated tokens."""
    out: dict[int, list[int]] = {}
    eng.on_token = lambda rid, tok, t, fin: out.setdefault(rid, []).append(tok)
    for rid, p, o, hs in reqs:
        eng.submit(rid, p, o, hashes=hs)
    while eng.has_work():
        assert eng.step()
        if check:
            eng.pc.check(eng.num_blocks, [*eng.prefilling, *eng.running])  # type: ignore[union-attr]
    eng.pc.check(eng.num_blocks, [])  # type: ignore[union-attr]
    assert eng.charged == 0
    return out


def cold(reqs: list[tuple[int, int, int, list[int]]]) -> dict[int, list[int]]:
    """Each request alone on a fresh engine: no cache hit possible."""
    out: dict[int, list[int]] = {}
    for r in reqs:
        out.update(serve(engine(), [r]))
    return out


def cached_of(eng: LiveEngine) -> dict[int, int]:
    return {r[0]: r[5] for r in eng.res_log if r[7] == END_FINISH}


@pytest.mark.parametrize("chunked", [False, True])
def test_hit_generates_the_cold_tokens_and_skips_the_cached_prefill(chunked: bool) -> None:
    reqs = [(0, 3 * BT + 5, 6, [11, 12, 13]),
            (1, 2 * BT + 9, 5, [11, 12]),          # two leading blocks cached
            (2, 3 * BT + 1, 4, [11, 12, 99]),      # diverges at the third block
            (3, 3 * BT, 5, [11, 12, 13])]          # whole prompt cached: recompute only its last token
    kw = {"chunked_prefill": True, "max_num_batched_tokens": 24} if chunked else {}
    eng = engine(**kw)
    hot: dict[int, list[int]] = {}
    for r in reqs:  # one after another: each sees the earlier ones' blocks
        hot.update(serve(eng, [r]))
    assert hot == cold(reqs)
    assert cached_of(eng) == {0: 0, 1: 2 * BT, 2: 2 * BT, 3: 3 * BT - 1}
    prefilled = sum(s[5] for s in eng.seg_log)
    assert prefilled == sum(p for _, p, _, _ in reqs) - (2 * BT + 2 * BT + 3 * BT - 1)


def test_same_iteration_and_chunked_sharing_is_exact() -> None:
    """Requests with one prefix admitted together (one batch; and chunk by chunk) share blocks as they are
    computed, and still generate the cold tokens."""
    reqs = [(r, 4 * BT + 3 * r + 1, 5, [7, 8, 9, 10]) for r in range(4)]
    ref = cold(reqs)
    whole = engine()
    assert serve(whole, reqs) == ref
    assert sorted(cached_of(whole).values()) == [0, 4 * BT, 4 * BT, 4 * BT]  # same iteration: the sim's hits
    chunked = engine(chunked_prefill=True, max_num_batched_tokens=40)
    assert serve(chunked, reqs) == ref
    hits = cached_of(chunked)
    assert hits[0] == 0 and all(0 < hits[r] <= 4 * BT for r in (1, 2, 3))  # a hit never runs ahead of the KV


def test_unreferenced_blocks_are_evicted_lru_under_pressure() -> None:
    eng = engine(num_blocks=24)  # 12 hash blocks of 2 KV blocks each
    serve(eng, [(0, 4 * BT, 1, [1, 2, 3, 4])])
    serve(eng, [(1, 4 * BT, 1, [5, 6, 7, 8])])
    serve(eng, [(2, 2 * BT, 1, [1, 2])])  # refreshes 1, 2: LRU order now 3, 4, 5, 6, 7, 8, 1, 2
    assert set(eng.pc.entries) == {1, 2, 3, 4, 5, 6, 7, 8}  # type: ignore[union-attr]
    serve(eng, [(3, 10 * BT, 1, [])])  # 20 blocks charged: 4 free, room for 2 cached hash blocks
    assert list(eng.pc.entries) == [1, 2]  # type: ignore[union-attr]
    serve(eng, [(4, 4 * BT, 1, [5, 6, 7, 8]), (5, 2 * BT + 3, 1, [1, 2])])
    assert cached_of(eng)[4] == 0 and cached_of(eng)[5] == 2 * BT


def test_preemption_with_shared_blocks_keeps_tokens_and_blocks() -> None:
    reqs = [(r, 2 * BT + 2 * r, 40, [3, 4]) for r in range(5)]
    ref = cold(reqs)
    for mode in ("recompute", "swap"):
        eng = engine(num_blocks=30, preemption=mode)
        assert serve(eng, reqs) == ref
        assert any(r[7] != END_FINISH for r in eng.res_log), "the test needs preemptions"


def test_engine_rejects_bad_prefix_settings() -> None:
    with pytest.raises(ValueError, match="prefix_block_tokens"):
        LiveEngine("tiny", {"prefix_caching": True}, 16)
    with pytest.raises(ValueError, match="multiple of the engine's block_size"):
        LiveEngine("tiny", {"prefix_caching": True, "block_size": 16}, 16, prefix_block_tokens=24)
    eng = engine()
    serve(eng, [(0, 2 * BT, 1, [1, 2])])
    with pytest.raises(ValueError, match="not a hash chain"):
        serve(eng, [(1, 2 * BT, 1, [5, 2])])  # (eng has 1 -> 2; here 2 follows 5)


def test_scale_tokens_keeps_whole_prefix_blocks() -> None:
    from schedgym.envs.serving.live_run import scale_tokens
    w = ServingWorkload("m", np.array([0.0, 1.0]), np.array([1100, 512]), np.array([10, 10]), None,
                        np.array([1, 2, 3, 1]), np.array([0, 3, 4]), 512)
    s = scale_tokens(w, 1 / 32)
    assert s.prefix_block_tokens == 16
    assert s.prompt_tokens.tolist() == [34, 16]
    assert s.hashes(0).tolist() == [1, 2] and s.hashes(1).tolist() == [1]  # the partial third block dropped


def _mooncake(n: int) -> ServingWorkload:
    from schedgym.envs.serving.io import load_trace
    return load_trace("mooncake-conversation").slice(0, n)


@pytest.mark.parametrize("engine_cfg", [{}, {"chunked_prefill": True, "max_num_batched_tokens": 256}])
def test_live_env_hits_match_the_simulator_and_validate(engine_cfg: dict) -> None:
    """Mooncake conversation on two live engines with prefix caching, round robin: the log validates and every
    request's cached prompt tokens equal the simulator's for the same routing. (The caches hold every block, so
    hits do not depend on timing; with evictions they would: how full a cache is depends on the load.)"""
    import gymnasium as gym

    import schedgym  # noqa: F401
    from schedgym.hwbackend.fidelity import round_robin
    env = gym.make("schedgym/LLMServingLive-v0", instance=_mooncake(40), token_scale=1 / 32, rate_scale=20.0,
                   context_limit=1024, num_blocks=1024, engine={"prefix_caching": True, **engine_cfg}, device=DEVICE)
    info, actions = round_robin(env)
    v = env.unwrapped.validate()
    run = env.unwrapped.state
    live = {int(r[0]): int(r[5]) for _, r in run.res if r[6] == 0}
    assert v["prefix_hit_fraction"] > 0
    assert sum(live.values()) > 0 and all(c % BT == 0 or c == run.prompt[r] - 1 for r, c in live.items())
    sim = gym.make("schedgym/LLMServing-v0", instance=env.unwrapped.instance, rate_scale=1.0, segment_requests=None,
                   cluster=[{"gpu": "CPU", "model": "schedgym-tiny", "max_model_len": 1024}] * 2,
                   engine={"prefix_caching": True, "num_gpu_blocks": 1024, **engine_cfg})
    _, sim_actions = round_robin(sim)
    s = sim.unwrapped.schedule()
    assert sim_actions == actions
    assert live == {int(r): int(c) for r, c, k in zip(s.res_request, s.res_cached, s.res_start_kind) if k == 0}
    assert sim.unwrapped.validate()["prefix_hit_fraction"] == pytest.approx(v["prefix_hit_fraction"])
    # The routers' view of the caches comes from the engines' published snapshots: what the simulator's hold.
    assert [set(c) for c in run.cached] == [set(e.prefix) for e in sim.unwrapped.state.engines]
    assert any(run.prefix_hits(int(r)).max() == 1.0 for r in np.flatnonzero(run.routed >= 0))


def test_cache_aware_router_runs_live_and_bad_block_sizes_are_refused() -> None:
    import gymnasium as gym

    import schedgym  # noqa: F401
    from schedgym.evaluation import run_episode
    from schedgym.policy import make_policy
    w = _mooncake(24)
    kw = dict(rate_scale=20.0, context_limit=1024, engine={"prefix_caching": True}, device=DEVICE)
    row = run_episode("schedgym/LLMServingLive-v0", make_policy("schedgym/LLMServingLive-v0", "cache_aware"), w, 0,
                      env_kwargs={**kw, "token_scale": 1 / 32})
    assert row["prefix_hit_fraction"] > 0
    env = gym.make("schedgym/LLMServingLive-v0", instance=w, token_scale=0.05, **kw)  # 26-token prefix blocks
    with pytest.raises(ValueError, match="not a multiple of block_size 16"):
        env.reset(seed=0)


def test_served_replicas_refuse_prefix_caching() -> None:
    from schedgym.hwbackend.serve.state import ReplicaSpec
    with pytest.raises(ValueError, match="ReplicaSpec.engine.prefix_caching"):
        ReplicaSpec(engine={"prefix_caching": True})


def test_prompt_ids_derive_from_hashes() -> None:
    eng = engine()
    eng.submit(0, 2 * BT + 3, 1, hashes=[5, 6])
    eng.submit(1, 2 * BT + 9, 1, hashes=[5, 7])
    a, b = eng.waiting
    assert (a.prompt[:BT] == b.prompt[:BT]).all() and not (a.prompt[BT:2 * BT] == b.prompt[BT:2 * BT]).all()
    other = LiveEngine("tiny", {"block_size": 8, "prefix_caching": True}, 64, prefix_block_tokens=BT, seed=1)
    other.submit(0, 2 * BT + 3, 1, hashes=[5, 6])
    assert not (other.waiting[0].prompt[:BT] == a.prompt[:BT]).all()  # the weights seed keys the stream


def test_migrating_a_sequence_with_shared_blocks_keeps_tokens_and_blocks() -> None:
    """Llumnix migration (``kv_transfer``) of a request whose table points at cached blocks: the KV is copied
    out, its references are released (the blocks stay cached), and it finishes on the other engine."""
    reqs = [(0, 3 * BT + 4, 12, [1, 2, 3]), (1, 3 * BT + 7, 20, [1, 2, 3])]
    ref = cold(reqs)
    tok: dict[int, list[int]] = {}
    a, b = engine(), engine()
    a.on_token = b.on_token = lambda rid, t, _, fin: tok.setdefault(rid, []).append(t)
    for rid, p, o, hs in reqs:
        a.submit(rid, p, o, hashes=hs)
    while len(tok.get(1, [])) < 5:
        a.step()
    assert cached_of(a) == {} and a.running[1].held  # request 1 shares request 0's blocks
    pkg = a.export_seq(1)
    a.pc.check(a.num_blocks, [*a.prefilling, *a.running])  # type: ignore[union-attr]
    b.import_seq(pkg)
    a.run_until_idle()
    b.run_until_idle()
    assert tok == ref
    a.pc.check(a.num_blocks, [])  # type: ignore[union-attr]
    assert a.charged == 0 and set(a.pc.entries) == {1, 2, 3}  # type: ignore[union-attr]
    assert [r[5] for r in a.res_log if r[0] == 1] == [3 * BT]  # the migrated-out stint reports its hit
