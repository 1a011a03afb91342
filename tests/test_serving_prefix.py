"""LLMServing prefix caching: cached blocks occupy free KV memory and are evicted LRU, the validator bounds
every hit by what was admitted before, and cache-aware routing beats JSQ on the Mooncake conversation trace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from schedgym.envs.serving.datasets import part
from schedgym.envs.serving.effects import run_policy
from schedgym.envs.serving.sim import ClusterSim
from schedgym.envs.serving.types import ClusterSpec, EngineConfig, ServingWorkload
from schedgym.envs.serving.validator import ScheduleError, validate_schedule

H100 = ("H100-80GB/Llama-3.1-8B",)


def _run(w: ServingWorkload, blocks: int | None) -> ClusterSim:
    sim = ClusterSim.build(w, ClusterSpec(H100, EngineConfig(prefix_caching=True, num_gpu_blocks=blocks)))
    while (r := sim.next_decision()) is not None:
        sim.route(r, 0)
    sim.drain()
    return sim


def _three() -> ServingWorkload:
    """A 3-block prompt, then a prompt filling the cache with other blocks, then the first prompt again."""
    hashes = np.array([1, 2, 3, 7, 8, 9, 10, 11, 12, 1, 2, 3], np.int64)
    return ServingWorkload("evict", np.array([0.0, 5.0, 100.0]), np.array([1536, 2900, 1536]),
                           np.array([5, 5, 5]), prefix_hashes=hashes, prefix_offsets=np.array([0, 3, 9, 12]))


def test_cached_blocks_occupy_kv_memory_and_are_evicted_lru() -> None:
    w = _three()
    big = _run(w, None).schedule()
    assert big.res_cached.tolist() == [0, 0, 1535]  # ample memory: the first prompt is still cached
    small = _run(w, 200)  # 200 blocks x 16 tokens: the 2900-token prompt leaves no room for idle entries
    s = small.schedule()
    assert s.res_cached.tolist() == [0, 0, 0]
    validate_schedule(w, s)
    validate_schedule(w, big)
    e = small.engines[0]
    assert e.unref * e.per_entry <= e.free and all(c == 0 for c in e.prefix.values())


def test_validator_bounds_hits_by_earlier_admissions() -> None:
    w = _three()
    s = _run(w, 200).schedule()
    cached = s.res_cached.copy()
    cached[np.flatnonzero(s.res_request == 1)[0]] = 600  # its blocks 7.. were never admitted before
    with pytest.raises(ScheduleError, match="leading prefix block"):
        validate_schedule(w, replace(s, res_cached=cached))


@pytest.mark.slow
def test_cache_aware_beats_jsq_on_mooncake_conversation() -> None:
    conv = part("mooncake-conversation", "test")
    kw = dict(cluster="h100-long-4", rate_scale=1.0, engine={"prefix_caching": True})
    jsq, _ = run_policy(conv, "jsq", 0, **kw)
    ca, _ = run_policy(conv, "cache_aware", 0, **kw)
    assert ca["mean_ttft"] < jsq["mean_ttft"]
